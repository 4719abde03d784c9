"""No file a user hands us can run code: the project's source never evaluates, unpickles
or shells out, and LUTs, spaces, recipes, architectures and checkpoints that carry a
code payload are refused with the payload left unrun."""

from __future__ import annotations

import ast
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_user_error
from tests.hardening.conftest import MICRO, cli, torch_checkpoint_with_payload

SOURCE_DIRS = ("densenas", "profilers")

# Calls that run code from data, by the dotted name they are called through.
FORBIDDEN_CALLS = {
    "eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec",
    "pickle.load", "pickle.loads", "pickle.Unpickler", "marshal.load", "marshal.loads", "shelve.open",
    "dill.load", "dill.loads", "ast.literal_eval", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all",
    "os.system", "os.popen", "os.execv", "os.execvp", "os.execl", "pandas.read_pickle", "pd.read_pickle",
    "torch.jit.load", "torch.package.PackageImporter",
}
FORBIDDEN_MODULES = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def code_running_calls(path: Path) -> list[str]:
    """Every place in one source file that could run code carried by data."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        where = f"{rel}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
            found.append(f"{where}: from {node.module} import ...")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in FORBIDDEN_CALLS:
            found.append(f"{where}: {name}(...)")
        elif name == "yaml.load":
            loader = _dotted(_keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else ast.Constant(None)))
            if loader not in ("yaml.SafeLoader", "yaml.CSafeLoader", "SafeLoader", "CSafeLoader"):
                found.append(f"{where}: yaml.load without SafeLoader")
        elif name == "torch.load" and not _is_true(_keyword(node, "weights_only")):
            found.append(f"{where}: torch.load without weights_only=True")
        elif name.split(".")[-1] in ("load", "loadtxt") and name.split(".")[0] in ("np", "numpy") \
                and _is_true(_keyword(node, "allow_pickle")):
            found.append(f"{where}: {name}(allow_pickle=True)")
        elif name.startswith("subprocess.") and _is_true(_keyword(node, "shell")):
            found.append(f"{where}: {name}(shell=True)")
    return found


def source_files() -> list[Path]:
    files = [p for d in SOURCE_DIRS for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 40, "the scan did not find the project's source"
    return files


def test_no_source_file_evaluates_unpickles_or_shells_out() -> None:
    offenders = [hit for path in source_files() for hit in code_running_calls(path)]
    assert offenders == []


def test_the_scan_catches_each_forbidden_form(tmp_path: Path) -> None:
    """The scanner is what guards the project: show it flags every form it looks for."""
    bad = tmp_path / "probe.py"
    text = ("import pickle, yaml, torch, subprocess, os, numpy as np\n"
            "eval('1')\nexec('x=1')\npickle.loads(b'')\nyaml.load(s)\nyaml.load(s, Loader=yaml.SafeLoader)\n"
            "torch.load(p)\ntorch.load(p, weights_only=False)\ntorch.load(p, weights_only=True)\n"
            "subprocess.run(c, shell=True)\nos.system('ls')\nnp.load(p, allow_pickle=True)\nnet.eval()\n")
    bad.write_text(text)
    hits = code_running_calls(bad)
    lines = sorted(int(h.split(":")[1]) for h in hits)
    # every line but the safe yaml.load (6), torch.load(weights_only=True) (9) and Module.eval() (13)
    assert lines == [1, 2, 3, 4, 5, 7, 8, 10, 11, 12], hits


def test_grep_finds_no_eval_exec_or_pickle_load() -> None:
    """The shell check the project's hooks run: method calls such as ``module.eval()``
    (a torch Module's switch to inference mode) are not ``eval``."""
    strict = subprocess.run(["grep", "-rnE", r"(^|[^.a-z_])(eval|exec)\(|pickle\.loads?\(", "--include=*.py", *SOURCE_DIRS],
                            cwd=ROOT, capture_output=True, text=True)
    assert strict.returncode == 1 and strict.stdout == "", strict.stdout
    plain = subprocess.run(["grep", "-rn", r"eval(\|exec(\|pickle.load", *SOURCE_DIRS],
                           cwd=ROOT, capture_output=True, text=True)
    hits = [ln for ln in plain.stdout.splitlines() if "/__pycache__/" not in ln and not ln.startswith("Binary")]
    for line in hits:
        code = line.split(":", 2)[2]
        assert "exec(" not in code and "pickle.load" not in code, line
        assert code.replace(".eval()", "").count("eval(") == 0, line


# -- files that carry a payload -------------------------------------------------------------


def _payload_files(root: Path, micro: dict[str, Path]) -> dict[str, object]:
    marker = root / "payload-ran"
    f: dict[str, object] = {**micro, "root": root, "marker": marker}
    for run, schema in (("search_run", "densenas.search_checkpoint/1"), ("train_run", "densenas.train_checkpoint/1")):
        (root / run).mkdir()
        torch_checkpoint_with_payload(root / run / "checkpoint.pt", marker, schema)
        f[run] = root / run
    f["weights"] = torch_checkpoint_with_payload(root / "weights.pt", marker, "densenas.weights/1")
    expr = f"__import__('os').mkdir('{marker}')"
    lut = json.loads(micro["lut"].read_text())
    lut["rows"][0]["median_ms"] = expr
    (root / "lut-expr.json").write_text(json.dumps(lut))
    lut["rows"][0]["median_ms"] = 0.1
    lut["rows"][0]["op"] = expr
    (root / "lut-op-expr.json").write_text(json.dumps(lut))
    (root / "legacy-list").write_text(f"[0.5, [{expr}]]")
    (root / "space.yaml").write_text(MICRO.replace("name: micro", f"name: !!python/object/apply:os.mkdir ['{marker}']"))
    (root / "recipe.yaml").write_text(f"epochs: !!python/object/apply:os.mkdir ['{marker}']\n")
    return f


CARRIERS = {
    "search --resume, pickled checkpoint": (("search", "--out", "{search_run}", "--resume"), ("{search_run}/checkpoint.pt",)),
    "eval --weights, pickled weights": (("eval", "--weights", "{weights}"), ("{weights}", "refused")),
    "export --weights, pickled weights": (("export", "--arch", "{arch}", "--weights", "{weights}", "--out", "{root}/m.onnx"),
                                          ("{weights}",)),
    "train --resume, pickled checkpoint": (("train", "--arch", "{arch}", "--out", "{train_run}", "--resume"),
                                           ("{train_run}/checkpoint.pt", "refused")),
    "LUT, expression as a latency": (("lut", "show", "{root}/lut-expr.json"), ("lut-expr.json", "rows[0]", "median_ms")),
    "LUT, expression as an op": (("lut", "check", "{root}/lut-op-expr.json", "--space", "{space}"),
                                 ("lut-op-expr.json", "rows[0]", "unknown op")),
    "legacy latency list, expression": (("lut", "import-legacy", "{root}/legacy-list", "--space", "resnet",
                                         "--out", "{root}/legacy.json"), ("legacy-list", "not a plain literal")),
    "space YAML, python tag": (("space", "show", "{root}/space.yaml"), ("space.yaml", "malformed YAML", "python/object")),
    "recipe YAML, python tag": (("train", "--arch", "{arch}", "--config", "{root}/recipe.yaml", "--out", "{root}/t"),
                                ("recipe.yaml", "python/object")),
}


@pytest.fixture(scope="module")
def carried(micro, tmp_path_factory):
    files = _payload_files(tmp_path_factory.mktemp("payloads"), micro)
    names = {k: str(v) for k, v in files.items()}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {what: pool.submit(cli, *(a.format(**names) for a in argv), cwd=files["root"])
                   for what, (argv, _) in CARRIERS.items()}
        yield files, names, futures


@pytest.mark.parametrize("what", list(CARRIERS))
def test_a_payload_is_refused_and_never_runs(what: str, carried) -> None:
    files, names, futures = carried
    proc = futures[what].result()
    assert_user_error(proc, *(n.format(**names) for n in CARRIERS[what][1]))
    assert not Path(files["marker"]).exists(), f"{what}: the payload ran"
    assert not (Path(files["root"]) / "m.onnx").exists() and not (Path(files["root"]) / "legacy.json").exists()
