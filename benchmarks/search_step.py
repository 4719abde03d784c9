"""What one search step costs, beside one training step of the network it derives.

    python benchmarks/search_step.py [--space mbv2-tiny] [--batch-size N] [--device cpu|cuda]

Times, on one batch of the search data, the engine's own weight step (one sampled op per
mixed op, SGD) and architecture step (two sampled ops, chained cost, Adam, rescale), and
a plain SGD step of the Viterbi-derived network, in the memory format the product trains
in on the device and in each other one asked for; reports medians and spreads after a
warm-up, the supernet's parameter bytes and peak memory (RSS on CPU, allocator peak on
CUDA), and writes them into a section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import write_section  # noqa: E402

SECTION = "## Search step vs a training step of the derived network (`benchmarks/search_step.py`)"


def _timed(fn: Callable[[int], None], device: torch.device, *, warmup: int, min_reps: int, min_s: float) -> list[float]:
    """Per-call milliseconds: ``warmup`` untimed calls, then at least ``min_reps`` calls and
    ``min_s`` seconds, each synchronised on CUDA."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        fn(i)
    sync()
    times: list[float] = []
    start = time.perf_counter()
    i = warmup
    while len(times) < min_reps or time.perf_counter() - start < min_s:
        t0 = time.perf_counter()
        fn(i)
        sync()
        times.append(1e3 * (time.perf_counter() - t0))
        i += 1
    return times


def _stats(times: list[float]) -> dict[str, float]:
    q = statistics.quantiles(times, n=4)
    return {"median_ms": statistics.median(times), "iqr_ms": q[2] - q[0], "n": len(times)}


def _bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _flops(engine, x: torch.Tensor, derived: torch.nn.Module) -> dict[str, float]:
    """Forward FLOPs of the weight step's sampled paths (the supernet runs every routing block
    and every incoming branch) and of the derived network: the ratio is the compute floor of
    the time ratio, whatever the implementation."""
    from torch.utils.flop_counter import FlopCounterMode

    def count(fn: Callable[[], object]) -> float:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            fn()
        return float(counter.get_total_flops())

    net, paths = engine.net, []
    for i in range(5):
        engine.sampler.reseed(0, "weights", i)
        path = engine.sampler.sample(net.head_alphas, net.stack_alphas, 1, "prob").to(x.device)
        paths.append(count(lambda: net(x, path.head, path.stack)))
    was = derived.training
    plain = count(lambda: derived(x))
    derived.train(was)
    return {"supernet_path": statistics.median(paths), "derived": plain}


def run(space: str, batch_size: int | None, device: str, threads: int | None, min_reps: int, min_s: float) -> dict:
    from densenas.nets import build_derived
    from densenas.search import SearchEngine, SearchOptions
    from densenas import runtime as rt
    from densenas.search.settings import fresh

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    settings = fresh(SearchOptions(space=space, cost="flops", batch_size=batch_size, epochs=2, arch_update_epoch=0))
    with tempfile.TemporaryDirectory() as tmp:
        engine = SearchEngine(settings, Path(tmp), rt.DistContext(device=dev), progress=False)
    arch_def = engine.derive()[0]  # from the seeded initial parameters, before any step moves them
    x, y = next(iter(engine.data.train))
    xv, yv = next(iter(engine.data.val))
    if len(yv) < len(y):
        xv, yv = x, y
    load_before = os.getloadavg()[0]
    rss_before = _peak_mb(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    weights = _timed(lambda i: engine.weight_step(x, y, 0, i, "prob"), dev, warmup=3, min_reps=min_reps, min_s=min_s)
    arch = _timed(lambda i: engine.arch_step(xv, yv, 0, i), dev, warmup=3, min_reps=min_reps, min_s=min_s)
    super_peak = _peak_mb(dev)

    derived = rt.to_device(build_derived(arch_def), dev).train()
    opt = torch.optim.SGD(derived.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    xd, yd = rt.images_to(x, dev), y.to(dev)

    def derived_step(_: int) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(derived(xd), yd).backward()
        opt.step()

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    plain = _timed(derived_step, dev, warmup=3, min_reps=min_reps, min_s=min_s)
    net = engine.net
    flops = _flops(engine, xd, derived)
    return {
        "flops": flops,
        "space": settings.space,
        "batch": int(y.numel()),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else (platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(),
        "weight_step": _stats(weights),
        "arch_step": _stats(arch),
        "derived_step": _stats(plain),
        "supernet_param_bytes": _bytes(net),
        "supernet_weights": sum(p.numel() for p in net.weight_parameters()),
        "derived_param_bytes": _bytes(derived),
        "peak_mb": super_peak,
        "peak_before_steps_mb": rss_before,
        "peak_kind": "CUDA allocator peak" if dev.type == "cuda" else "process peak RSS",
        "derived_net_config": arch_def.to_dict()["net_config"],
        "load": (load_before, os.getloadavg()[0]),
    }


def markdown(results: dict[str, dict]) -> str:
    """One table over the memory formats timed (``results`` by format name, the first the
    product's default), then the compute floor and memory of the first."""
    r = next(iter(results.values()))
    cpu = f"{platform.machine()}, {platform.system()} {platform.release()}"
    lines = [
        SECTION,
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')} on {r['device']} ({cpu}), torch {torch.__version__}, "
        f"{r['threads']} intra-op threads; space {r['space']}, batch {r['batch']} (one batch of the digits search data); "
        f"load average {r['load'][0]:.2f} at start, {r['load'][1]:.2f} at end (a shared machine: other work adds noise).",
        "",
        "| memory format | step | median ms | IQR ms | reps | x derived |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for fmt, res in results.items():
        d = res["derived_step"]
        for name, s in (("search: weight step (1 op per mixed op, SGD)", res["weight_step"]),
                        ("search: arch step (2 ops, chained cost, Adam, rescale)", res["arch_step"]),
                        ("derived network: SGD training step", d)):
            lines.append(f"| {fmt} | {name} | {s['median_ms']:.1f} | {s['iqr_ms']:.1f} | {s['n']} | "
                         f"{s['median_ms'] / d['median_ms']:.1f} |")
    if len(results) > 1:
        base, *others = results.items()
        for fmt, res in others:
            lines += ["", f"{base[0]} against {fmt}: " + ", ".join(
                f"{label} {res[key]['median_ms'] / base[1][key]['median_ms']:.2f}x faster"
                for label, key in (("weight step", "weight_step"), ("arch step", "arch_step"),
                                   ("derived step", "derived_step")))]
    f = r["flops"]
    lines += [
        "",
        f"Compute floor: a sampled path of the supernet costs {f['supernet_path'] / 1e9:.3f} GFLOP forward (median of 5 "
        f"paths), the derived network {f['derived'] / 1e9:.3f} ({f['supernet_path'] / f['derived']:.1f}x): every routing "
        "block and every incoming branch runs in the supernet, so the step ratio cannot fall below this without "
        "computing something else.",
        f"Supernet: {r['supernet_weights'] / 1e6:.2f} M weights, {r['supernet_param_bytes'] / 2**20:.1f} MiB of "
        f"parameters and buffers (derived network: {r['derived_param_bytes'] / 2**20:.2f} MiB); "
        f"{r['peak_kind']} {r['peak_mb']:.0f} MiB after the search steps ({r['peak_before_steps_mb']:.0f} MiB before them).",
        f"Derived network timed: `{r['derived_net_config']}`.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="mbv2-tiny")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the space's search batch size")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: torch's)")
    ap.add_argument("--min-reps", type=int, default=20)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    ap.add_argument("--memory-formats", nargs="*", default=["channels_last", "contiguous"],
                    help="layouts to time beside the default one (first in the table)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    from densenas.runtime import LAYOUT_ENV, LAYOUTS, layout

    default = next(name for name, fmt in LAYOUTS.items() if fmt == layout(args.device))
    results = {}
    for fmt in [default, *(f for f in args.memory_formats if f != default)]:
        os.environ[LAYOUT_ENV] = fmt
        results[fmt] = run(args.space, args.batch_size, args.device, args.threads, args.min_reps, args.min_seconds)
    text = markdown(results)
    print(text)
    if not args.no_write:
        write_section(text, "search-step", path=args.results)
        print(f"wrote {args.results}", file=sys.stderr)


if __name__ == "__main__":
    main()
