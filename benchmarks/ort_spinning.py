"""Why the onnxruntime profiler turns thread-pool spinning off: the same networks timed
alone and interleaved with each other, with ONNX Runtime's spinning on (its default) and
off. One command, results into benchmarks/RESULTS.md:

    python benchmarks/ort_spinning.py                  # mbv2, 12 networks, all usable CPUs
    python benchmarks/ort_spinning.py --space mbv2-tiny --networks 20

"Alone": each network is the only session alive while it is timed. "Interleaved": all
networks' sessions are alive and timed in the shuffled rounds the LUT protocol uses
(every op of a LUT is timed that way). With spinning on, a session's pool keeps
spinning after its run and takes cores from the next session; a LUT measured like that
holds op times inflated by whatever ran just before.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import RESULTS, write_section  # noqa: E402


def time_networks(space_name: str, n: int, threads: int | None, spinning: bool, seed: int) -> dict[str, list[float]]:
    """Median ms per network, timed alone and interleaved, with the LUT protocol."""
    from densenas.bench import measure_archs
    from densenas.bench import make_profiler
    from densenas.space import SearchSpace
    from densenas.lut.networks import sample_archs
    from densenas.profilers import Protocol

    archs = sample_archs(SearchSpace.load(space_name), n, seed)
    protocol = dataclasses.replace(Protocol(), chunk_size=max(n, Protocol().chunk_size))
    prof = make_profiler("onnxruntime", threads=threads, precision="fp32", protocol=protocol, spinning=spinning)
    with prof:
        alone = [measure_archs(prof, [a], 1)[0].median_ms for a in archs]
        together = [m.median_ms for m in measure_archs(prof, archs, 1)]
        threads_used = prof.threads_in_effect()
    return {"alone": alone, "interleaved": together, "threads": threads_used}


def markdown(space: str, results: dict[bool, dict], argv: list[str], started: str, loads: list[float], wall_s: float) -> str:
    from densenas.profilers import hostinfo

    rows = [
        "| thread-pool spinning | median ms alone | median ms interleaved | interleaved / alone per network: median (min-max) |",
        "|---|---:|---:|---|",
    ]
    for spinning in (True, False):
        r = results[spinning]
        ratios = [b / a for a, b in zip(r["alone"], r["interleaved"])]
        rows.append(
            f"| {'on (ONNX Runtime default)' if spinning else 'off (the profiler default)'} "
            f"| {statistics.median(r['alone']):.3f} | {statistics.median(r['interleaved']):.3f} "
            f"| {statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
    n = len(results[True]["alone"])
    return "\n".join([
        "## ONNX Runtime thread-pool spinning and interleaved timing (`benchmarks/ort_spinning.py`)",
        "",
        f"{started} on {hostinfo.cpu_model()} ({platform.machine()}, {os.cpu_count()} CPUs visible), onnxruntime "
        f"{hostinfo.library_version('onnxruntime')}, {results[True]['threads']} intra-op threads; space {space}, "
        f"{n} random networks (seed 0), batch 1, fp32; 1-minute load average {min(loads):.2f} to {max(loads):.2f}; "
        f"{wall_s:.0f} s in all.",
        "",
        f"Command: `{' '.join(['python benchmarks/ort_spinning.py', *argv])}`",
        "",
        *rows,
        "",
        "Alone: one session alive while it is timed. Interleaved: all sessions alive, timed in the shuffled "
        "rounds of the LUT protocol, as every op of a LUT is. A ratio near 1 means a session's time does not "
        "depend on what ran before it.",
    ])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", default="mbv2")
    ap.add_argument("--networks", type=int, default=12)
    ap.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all usable CPUs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = ap.parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t0, loads = time.perf_counter(), [os.getloadavg()[0]]
    results = {}
    for spinning in (True, False):
        results[spinning] = time_networks(args.space, args.networks, args.threads, spinning, args.seed)
        loads.append(os.getloadavg()[0])
    text = markdown(args.space, results, argv, started, loads, time.perf_counter() - t0)
    print(text)
    if not args.no_write:
        write_section(text, "ort-spinning")
        print(f"wrote {RESULTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
