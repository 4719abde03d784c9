"""Nothing lost: ``profile``, ``search`` and ``train`` SIGKILLed at several points, then
resumed, keep every finished piece of work unchanged, redo none of it, and end where an
uninterrupted run ends. After every kill each output file is whole (JSON parses, .pt
loads with weights_only=True) and the only leftovers are hidden ``.tmp`` files.
A loss that turns NaN or infinite stops the run with one clear line and leaves the last
good checkpoint as it was. Every file the project writes goes through the atomic writers.

The single kill after the first checkpoint, and the in-process NaN guard of training,
are tested beside their code (tests/lut, tests/train); these tests kill at other points.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import torch

from densenas.lut.store import LatencyTable
from densenas.space import SearchSpace
from tests.conftest import ROOT
from tests.hardening.conftest import (
    MICRO_OPS,
    assert_outputs_whole,
    cli,
    cli_json,
    finish,
    kill_when,
    start_cli,
)

# about 0.1 s an op and two ops a chunk, so kills land between saves
SLOW_PROTOCOL = {"DENSENAS_PROFILE_PROTOCOL": "warmup_s=0.02,min_sample_s=0.01,min_rounds=3,max_rounds=3,chunk_size=2"}


def _checkpoint_epoch(path: Path) -> int | None:
    """The epoch a checkpoint holds, None while there is none (it is written atomically,
    so when the file is there it is whole)."""
    if not path.exists():
        return None
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def _no_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "seconds" and not k.endswith("_per_sec")} for e in history]


# -- profile -------------------------------------------------------------------------------------


def test_profile_killed_before_and_between_chunks_keeps_every_saved_row(micro, tmp_path: Path) -> None:
    out = tmp_path / "out"
    lut = out / "lut.json"
    argv = ("profile", "--space", str(micro["space"]), "--backend", "torch-cpu", "--out", str(lut))
    seen: list[int] = []

    def rows_at_least(n: int):
        def ready() -> bool:
            if not lut.exists():
                return False
            table = LatencyTable.loads(lut.read_text(), source=str(lut))  # a reader never sees half a file
            seen.append(len(table.rows))
            return len(table.rows) >= n
        return ready

    snapshots = []
    # kill 1: as soon as the file is first saved (the overhead is measured, no row yet)
    # kill 2: two chunks further on
    for target in (0, 4):
        resume = ("--resume",) if snapshots else ()
        start = len(snapshots[-1].rows) if snapshots else 0
        kill_when(start_cli(*argv, *resume, env=SLOW_PROTOCOL), rows_at_least(start + target),
                  what=f"{start + target} rows in the LUT")
        assert_outputs_whole(out)
        snapshots.append(LatencyTable.load(lut))
        assert len(snapshots[-1].rows) < MICRO_OPS, "the kill should land before the last op"
    assert len(snapshots[1].rows) >= len(snapshots[0].rows) + 4
    assert seen == sorted(seen), "rows only ever accumulate"

    proc = cli("profile", *argv[1:], "--resume", "--json", env=SLOW_PROTOCOL)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(proc.stdout)
    assert res["reused"] == len(snapshots[-1].rows) and res["measured"] == MICRO_OPS - len(snapshots[-1].rows)
    final = LatencyTable.load(lut)
    assert final.missing(SearchSpace.load(str(micro["space"])).unique_signatures()) == []
    for snap in snapshots:  # each row measured before a kill is kept as it was: same stats, same timestamp
        for key, row in snap.rows.items():
            assert final.rows[key] == row and row.measured_at
    assert final.overhead_ms > 0


# -- search ---------------------------------------------------------------------------------------


SEARCH_EPOCHS = 6


def _search_argv(micro, out: Path) -> tuple[str, ...]:
    # six epochs of about 0.2 s: room for the kills to land mid-run
    return ("search", "--space", str(micro["space"]), "--lut", str(micro["lut"]), "--out", str(out),
            "--epochs", str(SEARCH_EPOCHS), "--max-steps", "6", "--json")


def test_search_killed_before_and_after_its_first_checkpoint_ends_as_uninterrupted(micro, tmp_path: Path) -> None:
    reference = start_cli(*_search_argv(micro, tmp_path / "ref"))  # runs alongside
    run = tmp_path / "run"
    argv = _search_argv(micro, run)
    ckpt = run / "checkpoint.pt"

    # A: after the run started (run.json written), before the first checkpoint
    kill_when(start_cli(*argv), lambda: (run / "run.json").exists(), what="run.json")
    assert not ckpt.exists(), "the kill should land before the first checkpoint"
    assert_outputs_whole(run)

    # B: as soon as the first checkpoint is there (the next epoch is under way)
    kill_when(start_cli(*argv, "--resume"), lambda: ckpt.exists(), what="the first checkpoint")
    assert_outputs_whole(run)
    saved = _checkpoint_epoch(ckpt)
    assert saved < SEARCH_EPOCHS - 1, "the kill should land before the last epoch"
    history = json.loads((run / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in history][: saved + 1] == list(range(saved + 1))

    resumed = cli_json(*argv, "--resume")
    ref = finish(reference)
    assert resumed["epochs_done"] == ref["epochs_done"] == SEARCH_EPOCHS
    for name in ("arch_params.json", "arch.json"):
        assert json.loads((run / name).read_text()) == json.loads((tmp_path / "ref" / name).read_text()), name
    mine = json.loads((run / "history.json").read_text())["epochs"]
    theirs = json.loads((tmp_path / "ref" / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in mine] == list(range(SEARCH_EPOCHS)), "each epoch ran to completion exactly once"
    assert _no_seconds(mine) == _no_seconds(theirs)
    for key in ("latency_ms", "expected_latency_ms", "top1", "net_config"):
        assert resumed[key] == ref[key], key
    assert _checkpoint_epoch(ckpt) == SEARCH_EPOCHS - 1


def test_search_stops_on_a_non_finite_loss_and_keeps_the_last_checkpoint(micro, tmp_path: Path) -> None:
    run = tmp_path / "run"
    # a cost term weighted beyond float range: the first architecture step's loss is infinite
    proc = cli("search", "--space", str(micro["space"]), "--lut", str(micro["lut"]), "--out", str(run),
               "--epochs", "2", "--arch-update-epoch", "1", "--max-steps", "2", "--sub-loss-factor", "1e39")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: search stopped: the loss became") and "epoch 1, arch step 0" in last, last
    assert f"last good checkpoint {run / 'checkpoint.pt'} (after epoch 1) is intact" in last, last
    assert assert_outputs_whole(run) == []
    assert _checkpoint_epoch(run / "checkpoint.pt") == 0
    from densenas.arch_params import load_arch_params

    load_arch_params(run / "arch_params.json")  # epoch 0's soft architecture, finite
    assert [e["epoch"] for e in json.loads((run / "history.json").read_text())["epochs"]] == [0]


# -- train ----------------------------------------------------------------------------------------------


def _train_argv(micro, out: Path) -> tuple[str, ...]:
    # 6 steps an epoch on the 1437 training digits
    return ("train", "--arch", str(micro["arch"]), "--epochs", "4", "--batch-size", "256", "--out", str(out), "--json")


def test_train_killed_before_its_first_and_after_its_second_checkpoint_ends_as_uninterrupted(micro, tmp_path: Path) -> None:
    reference = start_cli(*_train_argv(micro, tmp_path / "ref"))
    run = tmp_path / "run"
    argv = _train_argv(micro, run)
    ckpt = run / "checkpoint.pt"

    # A: during the first epoch (recipe.yaml is written just before training starts)
    kill_when(start_cli(*argv), lambda: (run / "recipe.yaml").exists(), what="recipe.yaml")
    assert not ckpt.exists() and not (run / "weights.pt").exists()
    assert_outputs_whole(run)

    # B: once epoch 2 is saved
    kill_when(start_cli(*argv, "--resume"), lambda: (_checkpoint_epoch(ckpt) or 0) >= 2, what="epoch 2's checkpoint")
    assert_outputs_whole(run)
    saved = _checkpoint_epoch(ckpt)
    assert 2 <= saved < 4 and not (run / "weights.pt").exists()
    assert [h["epoch"] for h in json.loads((run / "metrics.json").read_text())["history"]] == list(range(1, saved + 1))

    resumed = cli_json(*argv, "--resume")
    ref = finish(reference)
    assert resumed["resumed_from_epoch"] == saved
    for key in ("top1", "top5", "loss", "train_loss", "train_top1", "best_top1", "best_epoch"):
        assert resumed[key] == ref[key], key
    mine = torch.load(run / "weights.pt", weights_only=True)["state_dict"]
    theirs = torch.load(tmp_path / "ref" / "weights.pt", weights_only=True)["state_dict"]
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert [h["epoch"] for h in json.loads((run / "metrics.json").read_text())["history"]] == [1, 2, 3, 4]
    assert_outputs_whole(run)


def test_train_stops_on_a_non_finite_loss_with_one_clear_line(micro, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = cli(*_train_argv(micro, run)[:-1], "--lr", "1e30")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: training diverged") and "lower --lr" in last, last
    assert not (run / "weights.pt").exists() and not (run / "checkpoint.pt").exists()
    assert assert_outputs_whole(run) == []


# -- every write goes through the atomic writers -----------------------------------------------------------

WRITE_FUNCS = {"torch.save", "np.save", "numpy.save", "np.savez", "numpy.savez", "onnx.save", "onnx.save_model",
               "json.dump", "pickle.dump", "shutil.copy", "shutil.copy2",
               "shutil.copyfile", "shutil.copytree", "shutil.move", "os.rename", "os.replace", "tempfile.mkstemp",
               "lmdb.open", "SummaryWriter"}
WRITE_METHODS = {"write_text", "write_bytes", "savefig", "to_csv", "to_parquet", "tofile"}  # x.method(...)
DUMPS_TO_STREAM = {"yaml.dump", "yaml.safe_dump"}  # a write only when given a stream
# (file, function) -> why it may write directly
ALLOWED = {
    ("profilers/tensorrt_backend.py", "file_lock"): "an empty lock file opened only to hold an fcntl lock; nothing is written to it",
    ("densenas/data/lmdb_store.py", "__init__"): "LmdbWriter fills the temporary path pack_lmdb gets from atomic_path",
    ("densenas/search/engine.py", "run"): "TensorBoard events: an append-only log; resume drops a killed run's extra events (purge_step)",
    ("densenas/train/trainer.py", "_tensorboard"): "TensorBoard events, as the search's",
}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else node.attr
    return ""


def _write_mode(call: ast.Call, position: int) -> bool:
    mode = next((k.value for k in call.keywords if k.arg == "mode"), None)
    if mode is None and len(call.args) > position:
        mode = call.args[position]
    return isinstance(mode, ast.Constant) and isinstance(mode.value, str) and any(c in mode.value for c in "wax+")


def _atomic_temp(item: ast.withitem) -> bool:
    """``with atomic_path(...) as NAME``: NAME is a temporary file renamed into place."""
    call = item.context_expr
    return (isinstance(call, ast.Call) and _dotted(call.func).endswith("atomic_path")
            and isinstance(item.optional_vars, ast.Name))


def direct_writes(path: Path, rel: str) -> list[str]:
    """Writes in one source file that bypass the atomic writers: every write call, less
    those whose target is the temporary path an ``atomic_path`` block yields, less ALLOWED."""
    found = []

    def visit(node: ast.AST, func: str, temps: frozenset[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func, temps = node.name, frozenset()
        if isinstance(node, ast.With):
            temps = temps | {item.optional_vars.id for item in node.items if _atomic_temp(item)}
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            leaf = name.rsplit(".", 1)[-1]
            receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
            targets = [a for a in (receiver, *node.args) if isinstance(a, ast.Name)]
            readonly = any(k.arg == "readonly" and isinstance(k.value, ast.Constant) and k.value.value for k in node.keywords)
            streamed = len(node.args) > 1 or any(k.arg == "stream" for k in node.keywords)
            is_write = (name in WRITE_FUNCS and not readonly) or (receiver is not None and leaf in WRITE_METHODS) \
                or (name in DUMPS_TO_STREAM and streamed) \
                or (name in ("open", "io.open", "os.fdopen") and _write_mode(node, 1)) \
                or (leaf == "open" and name not in ("open", "io.open", "lmdb.open") and _write_mode(node, 0))
            if is_write and not any(t.id in temps for t in targets) and (rel, func) not in ALLOWED:
                found.append(f"{rel}:{node.lineno} in {func}(): {name}(...)")
        for child in ast.iter_child_nodes(node):
            visit(child, func, temps)

    visit(ast.parse(path.read_text(encoding="utf-8")), "<module>", frozenset())
    return found


def test_every_file_the_project_writes_goes_through_the_atomic_writers() -> None:
    files = [p for d in ("densenas", "profilers") for p in sorted((ROOT / d).rglob("*.py"))]
    assert len(files) > 40
    offenders = [w for p in files if p != ROOT / "profilers" / "atomic.py"
                 for w in direct_writes(p, p.relative_to(ROOT).as_posix())]
    assert offenders == []


def test_the_write_audit_catches_each_form(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f(p, fig, obj):\n"
        "    open(p, 'w').write('x')\n"            # 2: flagged
        "    p.write_text('x')\n"                   # 3: flagged
        "    torch.save(obj, p)\n"                  # 4: flagged
        "    fig.savefig(p)\n"                      # 5: flagged
        "    json.dump(obj, open(p, mode='a'))\n"   # 6: flagged twice
        "    with atomic_path(p) as tmp:\n"
        "        torch.save(obj, tmp)\n"            # 8: the atomic writer's temp file
        "        tmp.write_bytes(b'')\n"            # 9: likewise
        "    open(p).read()\n"                      # 10: a read
        "    lmdb.open(p, readonly=True)\n"         # 11: a read
        "    yaml.safe_dump(obj)\n"                 # 12: a string
        "    yaml.safe_dump(obj, fh)\n"             # 13: flagged
    )
    lines = [int(w.split(":")[1].split(" ")[0]) for w in direct_writes(probe, "probe.py")]
    assert sorted(lines) == [2, 3, 4, 5, 6, 6, 13], lines
