"""Shared pieces of the hardening suite: a 12-op space small enough that a search epoch
takes a fraction of a second, a LUT, an architecture and soft architecture for it, and
checks that a folder a killed run left behind holds only whole files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import run_cli
from tests.micro_space import MICRO, MICRO_NET_CONFIG, MICRO_OPS  # noqa: F401 (the hardening tests import them from here)

# One thread per process: runs are deterministic for a fixed thread count, and on a
# shared 2-core machine one thread is several times faster than two contending.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# what profilers.atomic.atomic_path names its temporary files
TEMP_NAME = re.compile(r"^\..+\.[A-Za-z0-9_]+\.tmp$")


def cli(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, one thread."""
    return run_cli(*args, cwd=cwd, timeout=timeout, env={**ONE_THREAD, **(env or {})})


def cli_json(*args: str, cwd: str | os.PathLike | None = None) -> dict:
    proc = cli(*args, cwd=cwd)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    return json.loads(proc.stdout)


def start_cli(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None) -> subprocess.Popen:
    """The CLI as a background process (to kill it, or to overlap a reference run)."""
    full = {**os.environ, "PYTHONUNBUFFERED": "1", **ONE_THREAD, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "densenas", *args], cwd=cwd, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], *, timeout: float = 240, what: str = "") -> None:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; fail if it ends first."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"the run ended (exit {proc.returncode}) before {what}: {err[-2000:]}")
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL, proc.returncode


def finish(proc: subprocess.Popen, timeout: float = 300) -> dict:
    """Wait for a background run and return its --json result."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, (proc.returncode, err[-3000:])
    return json.loads(out)


def assert_outputs_whole(folder: Path) -> list[Path]:
    """Every JSON file under ``folder`` parses, every .pt loads with weights_only=True, and
    whatever else is left is a temporary file named so no reader takes it for an output
    (``.NAME.XXXX.tmp``: hidden, and not ending in .json or .pt). Returns those leftovers."""
    import torch

    leftovers = []
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        if TEMP_NAME.match(p.name):
            leftovers.append(p)
        elif p.suffix == ".json":
            json.loads(p.read_text(encoding="utf-8"))
        elif p.suffix == ".pt":
            torch.load(p, map_location="cpu", weights_only=True)
    return leftovers


def torch_checkpoint_with_payload(path: Path, marker: Path, schema: str) -> Path:
    """A zip-format torch checkpoint whose unpickling would call ``os.mkdir(marker)``."""
    import pickletools
    import zipfile

    import torch

    class Payload:
        def __reduce__(self):
            return os.mkdir, (str(marker),)

    torch.save({"schema": schema, "model": Payload(), "epoch": 0}, path)
    with zipfile.ZipFile(path) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(pkl)]
    # the payload is live: the stream imports os.mkdir and calls it
    assert ("GLOBAL", f"{os.mkdir.__module__} mkdir") in ops and ("REDUCE", None) in ops, ops
    return path


@pytest.fixture(scope="session")
def micro(tmp_path_factory) -> dict[str, Path]:
    """The micro space, a complete LUT for it, a derived architecture, zero logits and
    random-init weights for that architecture, all as real files."""
    import torch

    from densenas.arch import parse_net_config
    from densenas.arch_params import ArchParams
    from densenas.lut.store import LatencyTable, LutRow
    from densenas.nets import build_derived
    from densenas.space import SearchSpace

    root = tmp_path_factory.mktemp("micro")
    space_path = root / "micro.yaml"
    space_path.write_text(MICRO)
    space = SearchSpace.load(str(space_path))
    sigs = space.unique_signatures(1, "fp32", 10)
    assert len(sigs) == MICRO_OPS
    rows = []
    for sig in sigs:  # a latency model: a floor plus a cost per multiply-add
        ms = 0.004 + 2e-8 * sig.c_in * sig.c_out * sig.h * sig.w / sig.stride**2
        rows.append(LutRow(sig, ms, ms, 0.0, ms, ms, samples=1, rounds=1, note="latency model"))
    meta = {"name": "micro/model", "backend": "latency-model", "device": "cpu", "batch": 1, "precision": "fp32",
            "input_size": space.input_size, "overhead_ms": 0.0, "threads": 1}
    lut_path = LatencyTable(meta, rows).save(root / "micro-lut.json")

    arch = parse_net_config(MICRO_NET_CONFIG, space)
    arch_path = root / "arch.json"
    arch.save(arch_path)
    params = ArchParams(space.name,
                        betas=[[0.0] * len(b.out_edges) for b in space.blocks[:-1]],
                        head_alphas=[[[0.0] * len(space.head_primitives)] * len(b.in_edges) for b in space.routing_blocks],
                        stack_alphas=[[[0.0] * len(space.stack_primitives)] * b.num_layers for b in space.routing_blocks])
    params_path = params.save(root / "arch_params.json")
    torch.manual_seed(0)
    weights_path = root / "weights.pt"
    torch.save(build_derived(arch).state_dict(), weights_path)
    return {"root": root, "space": space_path, "lut": lut_path, "arch": arch_path, "arch_params": params_path,
            "weights": weights_path}
