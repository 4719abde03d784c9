"""Inputs shared by the cost-model and derivation tests: a synthetic LUT in which every
term of a latency prediction shows, and seeded random architecture parameters."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from densenas.arch_params import ArchParams
from densenas.lut.store import LatencyTable, LutRow, load_lut
from densenas.space import SearchSpace

OVERHEAD, SCALE, OFFSET, SKIP_MS = 0.02, 1.1, 0.3, 0.004


def synthetic_lut(space: SearchSpace, path: Path, *, num_classes: int | None = None,
                  drop: str | None = None) -> LatencyTable:
    """A real LUT file with a row per signature of ``space`` (fixed pseudo-random medians),
    a per-call overhead and a calibration."""
    rng = random.Random(0)
    rows = []
    for sig in space.unique_signatures(num_classes=num_classes):
        if sig.op == drop:
            continue
        ms = OVERHEAD + (SKIP_MS if sig.op == "skip_connect" else rng.uniform(0.05, 1.0))
        rows.append(LutRow(sig, ms, ms, 0.0, ms, ms, samples=10))
    meta = {"backend": "synthetic", "device": "test", "batch": 1, "precision": "fp32", "input_size": space.input_size,
            "overhead_ms": OVERHEAD, "calibration": {"scale": SCALE, "network_offset_ms": OFFSET}}
    LatencyTable(meta, rows).save(path)
    return load_lut(path)


def random_params(space: SearchSpace, seed: int, scale: float = 1.0) -> ArchParams:
    """Architecture logits drawn from N(0, scale^2), seeded."""
    g = torch.Generator().manual_seed(seed)
    n_head, n_stack = len(space.head_primitives), len(space.stack_primitives)
    return ArchParams(
        space.name,
        [(scale * torch.randn(len(b.out_edges), generator=g, dtype=torch.float64)).tolist() for b in space.blocks[:-1]],
        [(scale * torch.randn(len(b.in_edges), n_head, generator=g, dtype=torch.float64)).tolist() for b in space.routing_blocks],
        [(scale * torch.randn(b.num_layers, n_stack, generator=g, dtype=torch.float64)).tolist() for b in space.routing_blocks],
    )
