"""Bad input through the real CLI: every case is one line on stderr naming the file, field
or op at fault, exit code 2, no traceback, and nothing half-made left behind.

The cases run as real subprocesses, several at once (each pays the torch import), and
each test then checks its own case's result.
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import assert_user_error
from tests.hardening.conftest import MICRO, MICRO_NET_CONFIG, cli


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # "{name}" placeholders are the files the ``bad`` fixture writes
    needles: tuple[str, ...]  # each must appear in the one stderr line
    absent: tuple[str, ...] = ()  # paths the failed command must not have created
    gpu: bool = False  # asks for a GPU: meaningful only on a machine without one

    def fill(self, files: dict[str, Path]) -> "Case":
        names = {k: str(v) for k, v in files.items()}
        return Case(self.id, tuple(a.format(**names) for a in self.argv), tuple(n.format(**names) for n in self.needles),
                    tuple(p.format(**names) for p in self.absent), self.gpu)


UNCHAINED = MICRO_NET_CONFIG.replace("[[12, 16]", "[[14, 16]")
CODE = MICRO_NET_CONFIG.replace("'mbconv_k3_t3', ['mbconv_k3_t3']", "__import__('os').mkdir('{marker}'), []")

CASES = [
    # search-space YAML
    Case("space-malformed-yaml", ("space", "show", "{bad_yaml}"), ("{bad_yaml}", "line 5", "malformed YAML")),
    Case("space-width-fm-lengths", ("space", "show", "{lens_yaml}"),
         ("{lens_yaml}", "field blocks", "fm has 2 entries but ch has 3")),
    Case("space-lengths-via-profile", ("profile", "--space", "{lens_yaml}", "--backend", "torch-cpu", "--out", "{root}/p.json"),
         ("{lens_yaml}", "field blocks", "fm has 2 entries"), absent=("{root}/p.json",)),
    Case("space-unconnectable-fm", ("space", "show", "{ratio_yaml}"),
         ("{ratio_yaml}", "field blocks", "block 1 (ch 12, fm 4) has no outgoing edge", "fm ratio is 1 or 2")),
    Case("space-unknown-primitive", ("space", "show", "{prim_yaml}"),
         ("{prim_yaml}", "field primitives", "unknown op 'mbconv_k9_t3'")),
    # LUT files
    Case("lut-unknown-schema", ("lut", "show", "{lut_v9}"), ("{lut_v9}", "field 'schema'", "'densenas.lut/9'")),
    Case("lut-truncated", ("lut", "check", "{lut_trunc}", "--space", "{space}"), ("{lut_trunc}", "truncated or corrupt")),
    Case("lut-corrupt-bytes", ("lut", "show", "{lut_corrupt}"), ("{lut_corrupt}", "cannot read LUT file")),
    Case("lut-missing-op-search", ("search", "--space", "{space}", "--lut", "{lut_missing}", "--out", "{root}/s-missing"),
         ("{lut_missing}", "lacks 1 of the 12 ops", "classifier(32->10, s1, 4x4, b1, fp32)"), absent=("{root}/s-missing",)),
    Case("lut-other-batch-check", ("lut", "check", "{lut}", "--space", "{space}", "--batch", "8"),
         ("{lut}", "measured at batch 1", "asked for batch 8")),
    Case("lut-other-precision-check", ("lut", "check", "{lut}", "--space", "{space}", "--precision", "fp16"),
         ("{lut}", "precision fp32", "precision fp16")),
    Case("lut-other-batch-bench", ("bench", "--arch", "{arch}", "--backend", "torch-cpu", "--lut", "{lut}", "--batch", "8",
                                   "--protocol", "fast"), ("{lut}", "measured at batch 1", "asked for batch 8")),
    Case("lut-other-input-size-predict", ("predict", "--arch", "{arch}", "--lut", "{lut_32}"), ("{lut_32}", "32x32", "16x16")),
    Case("arch-wrong-schema", ("arch", "show", "{arch_schema}"), ("{arch_schema}", "field schema", "'densenas.arch/7'")),
    Case("arch-unknown-op", ("arch", "show", "{arch_unknown_op}"), ("{arch_unknown_op}", "blocks[0].head_op", "'conv9x9'")),
    Case("arch-op-not-in-lut", ("predict", "--arch", "{arch_k7}", "--lut", "{lut}"), ("{lut}", "mbconv_k7_t6(8->12, s2")),
    Case("arch-widths-do-not-chain", ("arch", "show", "{arch_unchained}"),
         ("{arch_unchained}", "blocks[1]", "in_ch 14 does not chain", "outputs 12")),
    Case("net-config-widths-do-not-chain", ("arch", "import", UNCHAINED, "--space", "{space}", "--out", "{root}/u.json"),
         ("net_config", "in_ch 14 does not chain"), absent=("{root}/u.json",)),
    Case("net-config-with-python-code", ("arch", "import", CODE, "--space", "{space}", "--out", "{root}/code.json"),
         ("net_config part 2", "not a plain literal", "__import__"), absent=("{marker}", "{root}/code.json")),
    # arch_params.json
    Case("arch-params-wrong-shape", ("derive", "--arch-params", "{ap_shape}", "--space", "{space}", "--out", "{root}/d.json"),
         ("{ap_shape}", "field betas[0]", "expected 2 outgoing edges, got 3"), absent=("{root}/d.json",)),
    Case("arch-params-nan", ("predict", "--arch-params", "{ap_nan}", "--space", "{space}", "--lut", "{lut}"),
         ("{ap_nan}", "field stack_alphas[0][0][0]", "nan")),
    # checkpoints and weights that are not
    Case("search-resume-garbage-checkpoint", ("search", "--out", "{search_run}", "--resume"),
         ("{search_run}/checkpoint.pt",)),
    Case("eval-garbage-weights", ("eval", "--weights", "{garbage_pt}"), ("{garbage_pt}",)),
    Case("data-missing-search", ("search", "--space", "{space}", "--lut", "{lut}", "--data", "{root}/no-such-dir",
                                 "--out", "{root}/s-data"), ("--data {root}/no-such-dir", "no such file or directory")),
    Case("data-without-images-train", ("train", "--arch", "{arch}", "--data", "{no_images}", "--out", "{root}/t-noimg"),
         ("{no_images}/train", "no images")),
    # backends
    Case("backend-unknown-bench", ("bench", "--arch", "{arch}", "--backend", "no-such-backend"),
         ("unknown profiler backend 'no-such-backend'", "torch-cpu", "onnxruntime")),
    Case("gpu-bench-torch-cuda", ("bench", "--arch", "{arch}", "--backend", "torch-cuda"), ("torch-cuda", "GPU"), gpu=True),
    Case("gpu-export-tensorrt", ("export", "--arch", "{arch}", "--format", "tensorrt", "--weights", "{weights}",
                                 "--out", "{root}/m.engine"), ("tensorrt",), absent=("{root}/m.engine",), gpu=True),
    Case("gpu-train-cuda", ("train", "--arch", "{arch}", "--device", "cuda", "--out", "{root}/t-cuda"), ("cuda",),
         absent=("{root}/t-cuda/checkpoint.pt",), gpu=True),
]


def _write_bad_files(root: Path, micro: dict[str, Path]) -> dict[str, Path]:
    """Each bad file a case refers to: a valid micro file with one thing broken."""
    import torch

    f: dict[str, Path] = {**micro, "root": root, "marker": root / "payload-ran"}
    lines = MICRO.splitlines()

    def space(name: str, old: str, new: str) -> None:
        assert old in MICRO
        f[name.replace(".", "_").replace("-", "_")] = root / name
        (root / name).write_text(MICRO.replace(old, new))

    space("bad.yaml", "stem: mbv2\n", "stem: mbv2: [\n")
    assert lines[4] == "stem: mbv2"  # the malformed line is line 5
    space("lens.yaml", "fm: [8, 4, 4]", "fm: [8, 4]")
    space("ratio.yaml", "fm: [8, 4, 4]", "fm: [8, 4, 1]")
    space("prim.yaml", "stack: [mbconv_k3_t3, skip_connect]", "stack: [mbconv_k3_t3, mbconv_k9_t3, skip_connect]")

    lut_text = micro["lut"].read_text()
    lut = json.loads(lut_text)

    def lut_file(name: str, data: dict | str | bytes) -> None:
        p = root / f"{name}.json"
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data if isinstance(data, str) else json.dumps(data))
        f[name.replace("-", "_")] = p

    lut_file("lut-v9", {**lut, "schema": "densenas.lut/9"})
    lut_file("lut-trunc", lut_text[: len(lut_text) // 2])
    raw = lut_text.encode()
    lut_file("lut-corrupt", raw[:200] + bytes(range(128, 256)) + raw[328:])
    lut_file("lut-missing", {**lut, "meta": {**lut["meta"], "rows": len(lut["rows"]) - 1},
                             "rows": [r for r in lut["rows"] if r["op"] != "classifier"]})
    lut_file("lut-32", {**lut, "meta": {**lut["meta"], "input_size": 32}})

    arch = json.loads(micro["arch"].read_text())

    def arch_file(name: str, edit) -> None:
        d = json.loads(json.dumps(arch))
        edit(d)
        (root / f"{name}.json").write_text(json.dumps(d))
        f[name.replace("-", "_")] = root / f"{name}.json"

    arch_file("arch-schema", lambda d: d.update(schema="densenas.arch/7"))
    arch_file("arch-unknown-op", lambda d: d["blocks"][0].update(head_op="conv9x9"))
    arch_file("arch-k7", lambda d: d["blocks"][0].update(head_op="mbconv_k7_t6"))
    arch_file("arch-unchained", lambda d: d["blocks"][1].update(in_ch=14))

    params = json.loads(micro["arch_params"].read_text())
    shape = json.loads(json.dumps(params))
    shape["betas"][0].append(0.0)
    (root / "ap-shape.json").write_text(json.dumps(shape))
    nan = json.loads(json.dumps(params))
    nan["stack_alphas"][0][0][0] = float("nan")
    (root / "ap-nan.json").write_text(json.dumps(nan))  # json writes the bare NaN token
    f.update(ap_shape=root / "ap-shape.json", ap_nan=root / "ap-nan.json")

    whole = root / "whole.pt"
    torch.save({"schema": "densenas.search_checkpoint/1", "model": {"w": torch.zeros(64, 64)}}, whole)
    f["search_run"] = root / "search_run"
    f["search_run"].mkdir()
    (f["search_run"] / "checkpoint.pt").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # truncated
    f["garbage_pt"] = root / "garbage.pt"
    f["garbage_pt"].write_bytes(b"PK\x03\x04" + bytes(range(256)) * 4)
    f["no_images"] = root / "no-images"
    for split in ("train", "val"):
        (f["no_images"] / split / "cat").mkdir(parents=True)
        (f["no_images"] / split / "cat" / "notes.txt").write_text("not an image\n")
    return f


def _selected(session: pytest.Session) -> list[Case]:
    """The cases pytest will run this session (so ``-k`` runs only those)."""
    ids = {item.callspec.params["case"].id for item in session.items
           if getattr(item, "originalname", "") == "test_bad_input_is_one_line_exit_2"}
    return [c for c in CASES if c.id in ids]


@pytest.fixture(scope="module")
def results(request, micro, tmp_path_factory):
    """Every selected case's finished process, run a few at a time."""
    files = _write_bad_files(tmp_path_factory.mktemp("bad"), micro)
    cases = {c.id: c.fill(files) for c in _selected(request.session)}
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures: dict[str, Future] = {cid: pool.submit(cli, *c.argv, cwd=files["root"]) for cid, c in cases.items()}
        yield {cid: (cases[cid], fut) for cid, fut in futures.items()}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2(case: Case, results) -> None:
    if case.gpu:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is visible here: the no-GPU refusal cannot be checked")
    filled, future = results[case.id]
    proc: subprocess.CompletedProcess = future.result()
    assert_user_error(proc, *filled.needles)
    for path in filled.absent:
        assert not Path(path).exists(), f"{path} exists after the refused command"

