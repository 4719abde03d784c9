"""The whole job on embedded defaults, as the README's first command runs it: profile the
small space on this CPU, search with that LUT on the built-in digits data, derive,
export to ONNX, and measure the exported network beside the LUT's prediction.

Every step is the same library call the individual commands make; nothing here is a
second implementation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from densenas.profilers import Protocol

SPACE = "mbv2-tiny"
BACKEND = "onnxruntime"
# networks the LUT's in-context costs are fitted on: every row covered several times,
# a few seconds of timing on a laptop CPU
NETWORKS = 48


@dataclass
class QuickstartResult:
    run_dir: Path
    lut: Path
    search_dir: Path
    arch: Path
    onnx: Path
    summary: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "lut": str(self.lut),
            "search_dir": str(self.search_dir),
            "arch": str(self.arch),
            "onnx": str(self.onnx),
            **self.summary,
            "timings_s": {k: round(v, 1) for k, v in self.timings_s.items()},
        }


def default_run_dir() -> Path:
    return Path("runs") / f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"


def warmup_epochs(epochs: int) -> int:
    """The space's share of weight-only warm-up epochs, for a shorter (or longer) search:
    at least one epoch is left for architecture updates."""
    from densenas.search.settings import warmup_share
    from densenas.space import SearchSpace

    return warmup_share(SearchSpace.load(SPACE).config.search, epochs)


def run_quickstart(run_dir: Path, *, backend: str = BACKEND, epochs: int | None = None,
                   seed: int | None = None, networks: int = NETWORKS, protocol: "Protocol | None" = None,
                   log: Callable[[str], None] = lambda _: None) -> QuickstartResult:
    """Profile -> search -> derive -> export -> bench, writing everything under ``run_dir``.

    Re-running on the same directory continues where it stopped: the LUT is resumed and
    the search is resumed from its last checkpoint.
    """
    from densenas.arch import load_arch
    from densenas.bench import bench_arch
    from densenas.export import build_model, export_onnx_model
    from densenas.lut.profile import profile_space
    from densenas.lut.store import LatencyTable
    from densenas.search.engine import run_search
    from densenas.search.settings import SearchOptions

    run_dir.mkdir(parents=True, exist_ok=True)
    lut_path = run_dir / f"lut-{SPACE}-{backend}.json"
    search_dir = run_dir / "search"
    onnx_path = run_dir / "model.onnx"
    timings: dict[str, float] = {}

    t = time.perf_counter()
    log(f"[1/4] profiling every op of {SPACE} on {backend} -> {lut_path}")
    refined = lut_path.exists() and "refinement" in LatencyTable.load(lut_path).meta  # a resumed run keeps its fit
    profiled = profile_space(SPACE, backend, out=lut_path, resume=lut_path.exists(), log=log, protocol=protocol,
                             networks=None if refined else networks)
    timings["profile"] = time.perf_counter() - t

    t = time.perf_counter()
    log(f"[2/4] searching {SPACE} on the digits data with that LUT -> {search_dir}")
    resume = (search_dir / "checkpoint.pt").exists()
    fresh = not resume and epochs is not None
    result = run_search(SearchOptions(space=SPACE, lut=str(lut_path), out=str(search_dir), resume=resume,
                                      epochs=epochs if fresh else None, seed=None if resume else seed,
                                      arch_update_epoch=warmup_epochs(epochs) if fresh else None))
    timings["search"] = time.perf_counter() - t
    arch_path = result.files.arch
    arch = load_arch(arch_path)

    t = time.perf_counter()
    log(f"[3/4] exporting the derived network to ONNX -> {onnx_path}")
    model, _ = build_model(arch, None)
    exported = export_onnx_model(model, (1, 3, arch.input_size, arch.input_size), onnx_path)
    timings["export"] = time.perf_counter() - t

    t = time.perf_counter()
    log(f"[4/4] measuring the network end to end on {backend}, beside the LUT's prediction")
    bench = bench_arch(arch, backend, arch_path=str(arch_path), lut=str(lut_path))
    timings["bench"] = time.perf_counter() - t

    search = result.to_json()
    summary = {
        "space": SPACE,
        "backend": backend,
        "device": bench.device,
        "lut_rows": profiled.to_dict().get("rows"),
        "net_config": search["net_config"],
        "blocks": [
            {"in_ch": b.in_ch, "out_ch": b.out_ch, "stride": b.stride, "head_op": b.head_op,
             "stack_ops": list(b.stack_ops)} for b in arch.blocks
        ],
        "macs": search.get("macs"),
        "params": search.get("params"),
        "search_top1": search.get("top1"),
        "expected_latency_ms": search.get("expected_latency_ms"),
        "predicted_latency_ms": bench.predicted.total if bench.predicted else None,
        "measured_latency_ms": bench.measurement.median_ms,
        "measured_p90_ms": bench.measurement.p90_ms,
        "prediction_error_pct": bench.error_pct,
        "onnx_max_abs_diff": exported.max_abs_diff,
        "lut_refinement": None if profiled.refinement is None else {
            "stored": profiled.refinement.stored, "reason": profiled.refinement.reason,
            "held_out": profiled.refinement.to_dict()["held_out"],
            "noise_floor": profiled.refinement.to_dict()["noise_floor"]},
    }
    return QuickstartResult(run_dir, lut_path, search_dir, Path(arch_path), onnx_path, summary, timings)
