"""Shared pieces of the search tests: a LUT built in code and small search spaces.

The LUT's rows are a latency model of the op (a per-op floor plus a cost per multiply-add
counted by torch's FLOP counter), so searches are seeded and deterministic; it is a real
``LatencyTable`` file, loaded through the same code as a profiled one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from densenas.counting import count_macs
from densenas.lut.store import LatencyTable, LutRow
from densenas.ops import input_shape_for_signature, module_for_signature
from densenas.signature import OpSignature
from densenas.space import SearchSpace

FLOOR_MS = 0.004
MS_PER_MMAC = 0.02


def model_latency(sig: OpSignature) -> float:
    macs = count_macs(module_for_signature(sig), input_shape_for_signature(sig))
    return FLOOR_MS + MS_PER_MMAC * macs / 1e6


def build_lut(space: SearchSpace, *, num_classes: int = 10, drop: int = 0) -> LatencyTable:
    """A LUT with a row for every op of ``space`` (less the first ``drop`` rows)."""
    meta = {"name": f"{space.name}/model", "backend": "latency-model", "device": "cpu", "batch": 1,
            "precision": "fp32", "input_size": space.input_size, "overhead_ms": 0.0, "threads": 1}
    rows = []
    for sig in space.unique_signatures(1, "fp32", num_classes)[drop:]:
        ms = model_latency(sig)
        rows.append(LutRow(sig, ms, ms, 0.0, ms, ms, samples=1, rounds=1, note="latency model"))
    return LatencyTable(meta, rows, source="<model>")


def write_space(path: Path, base: str = "mbv2-tiny", **search: object) -> Path:
    """A copy of a shipped space with some ``search:`` settings replaced (nested keys as dicts)."""
    data = yaml.safe_load(SearchSpace.load(base).source and Path(SearchSpace.load(base).source).read_text())
    for key, value in search.items():
        if isinstance(value, dict):
            data["search"].setdefault(key, {}).update(value)
        else:
            data["search"][key] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def tiny_lut(tmp_path_factory) -> Path:
    """The tiny space's LUT file (every op)."""
    path = tmp_path_factory.mktemp("lut") / "mbv2-tiny-model.json"
    build_lut(SearchSpace.load("mbv2-tiny")).save(path)
    return path


@pytest.fixture(autouse=True)
def one_thread():
    """Searches in these tests run on one intra-op thread: fast on a shared machine (no
    spinning threads fighting over cores) and one float reduction order everywhere."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_search_cli(*args: str, timeout: float = 600):
    """The real CLI in a subprocess, on one thread (see ``one_thread``)."""
    from tests.conftest import run_cli

    return run_cli(*args, timeout=timeout, env={"OMP_NUM_THREADS": "1"})
