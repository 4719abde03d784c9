"""Profiling a whole space: this project's protocol against the paper's, side by side.

    python benchmarks/profile_protocol.py [--space mbv2-tiny] [--paper-runs 5000] [--threads N]

Ours: ``densenas.lut.profile.profile_space`` on torch-cpu (unique signatures only,
warm-up, adaptive repetition, shuffled interleaved rounds, medians). The paper's: every
op *instance* of the supernet measured on its own, a fixed count of runs with the first
100 discarded, the mean of ``time.time()`` deltas, no de-duplication. Each protocol runs
twice; we report wall time, the ratio, and run-to-run agreement (share of rows within
3% / 5%, median |difference| %). Writes its section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results import RESULTS, write_section  # noqa: E402


def agreement(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Run-to-run agreement of two {row: ms} maps over their common rows with a > 0."""
    diffs = [abs(b[k] - a[k]) / a[k] * 100 for k in a if k in b and a[k] > 0]
    if not diffs:
        nan = float("nan")
        return {"rows": 0, "within_3pct": 0.0, "within_5pct": 0.0, "median_abs_pct": nan, "p90_abs_pct": nan,
                "median_ratio": nan, "within_5pct_rescaled": 0.0, "median_abs_pct_rescaled": nan}
    diffs.sort()
    ratio = statistics.median(b[k] / a[k] for k in a if k in b and a[k] > 0)
    shape = sorted(abs(b[k] / ratio - a[k]) / a[k] * 100 for k in a if k in b and a[k] > 0)
    return {
        "rows": len(diffs),
        "median_ratio": ratio,
        "within_5pct_rescaled": sum(d <= 5 for d in shape) / len(shape),
        "median_abs_pct_rescaled": statistics.median(shape),
        "within_3pct": sum(d <= 3 for d in diffs) / len(diffs),
        "within_5pct": sum(d <= 5 for d in diffs) / len(diffs),
        "median_abs_pct": statistics.median(diffs),
        "p90_abs_pct": diffs[min(len(diffs) - 1, int(0.9 * len(diffs)))],
    }


def run_ours(space: str, threads: int, out: Path) -> tuple[float, dict[str, float]]:
    from densenas.lut.profile import parse_protocol, profile_space

    t0 = time.perf_counter()
    res = profile_space(space, "torch-cpu", threads=threads, out=out, force=True, protocol=parse_protocol("default"))
    wall = time.perf_counter() - t0
    return wall, {k: r.median_ms for k, r in res.table.rows.items()}


def run_paper(space_name: str, threads: int, runs: int, discard: int) -> tuple[float, dict[str, float], int]:
    """The paper's measurement, faithfully: one module per op instance, ``runs`` forward
    calls each timed with time.time(), the first ``discard`` dropped, the mean kept."""
    import torch

    from densenas.ops import input_shape_for_signature, module_for_signature
    from densenas.space import SearchSpace

    space = SearchSpace.load(space_name)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        instances = list(space.op_instances())
        for inst in instances:
            module = module_for_signature(inst.signature)
            x = torch.randn(input_shape_for_signature(inst.signature))
            times = []
            with torch.no_grad():
                for i in range(runs):
                    start = time.time()
                    module(x)
                    if i >= discard:
                        times.append(time.time() - start)
            rows[f"{inst.role}:{inst.block}:{inst.index}:{inst.op}"] = sum(times) / len(times) * 1e3
    finally:
        torch.set_num_threads(saved)
    return time.perf_counter() - t0, rows, len(instances)


def shipped_lines() -> list[str]:
    """Wall times of the shipped LUTs measured on a host (from their provenance)."""
    from densenas.lut.store import list_shipped, load_lut

    rows = []
    for e in list_shipped():
        if "error" in e or e["backend"].startswith("legacy"):
            continue
        meta = load_lut(e["path"]).meta
        load = meta.get("host_load") or {}
        quality = meta.get("quality") or {}
        rows.append(
            f"| `{e['name']}` | {e['backend']} {meta.get('backend_version')} | {e['device']}, {meta.get('threads')} threads "
            f"| {e['rows']} | {meta.get('profile_wall_s', 'n/a')} | {(meta.get('overhead_ms') or 0) * 1e3:.1f} "
            f"| {(load.get('start') or ['?'])[0]} / {(load.get('end') or ['?'])[0]} "
            f"| {quality.get('stable_share', 'n/a')} | {str(meta.get('date', ''))[:10]} |"
        )
    if not rows:
        return []
    return [
        "",
        "Shipped LUTs measured with `densenas profile --space S --backend B --out luts/S/NAME@N.json` "
        "(default protocol); figures from each LUT's provenance (`profile_wall_s`, `host_load`, `quality`):",
        "",
        "| LUT | backend | device | rows | measuring wall time, all passes (s) | per-call overhead (us) | load avg start / end "
        "| share of rows settled (IQR/median < target) | date |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def main(argv: list[str] | None = None) -> int:
    from densenas.profilers import hostinfo

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="mbv2-tiny")
    ap.add_argument("--paper-runs", type=int, default=5000, help="forward calls per op instance (paper: 5000)")
    ap.add_argument("--paper-discard", type=int, default=100, help="first calls dropped (paper: 100)")
    ap.add_argument("--threads", type=int, default=hostinfo.usable_cpus())
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    ap.add_argument("--results", type=Path, default=RESULTS, help="the results file to update")
    ap.add_argument("--section", default="profile_protocol", help="marker name of the section to replace")
    ap.add_argument("--title", default="", help="extra words for the section title (e.g. the host)")
    ap.add_argument("--dump", type=Path, help="also write every run's per-row milliseconds to this JSON file")
    ap.add_argument("--shipped-only", action="store_true",
                    help="only refresh the table of shipped LUTs' profiling wall times (its own section)")
    ap.add_argument("--note", default="", help="a paragraph to add under the table (--shipped-only)")
    args = ap.parse_args(argv)
    if args.shipped_only:
        text = "\n".join(["## Shipped LUTs: profiling wall time (`benchmarks/profile_protocol.py --shipped-only`)",
                          *shipped_lines(), *(["", args.note] if args.note else [])])
        print(text)
        if not args.no_write:
            write_section(text, "profile_protocol-shipped", path=args.results)
        return 0
    if args.paper_runs <= args.paper_discard:
        ap.error("--paper-runs must exceed --paper-discard")

    from densenas.profilers.hostinfo import HostMonitor

    load_start = os.getloadavg()
    monitor = HostMonitor()
    busy: dict[str, list[float | None]] = {"ours": [], "paper": []}
    ours = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in (1, 2):
            monitor.other_cpus()
            ours.append(run_ours(args.space, args.threads, Path(tmp) / f"ours{i}.json"))
            busy["ours"].append(monitor.other_cpus())
            print(f"ours run {i}: {ours[-1][0]:.1f} s, {len(ours[-1][1])} signatures, "
                  f"other processes {busy['ours'][-1]} CPUs", file=sys.stderr)
    paper = []
    for i in (1, 2):
        monitor.other_cpus()
        paper.append(run_paper(args.space, args.threads, args.paper_runs, args.paper_discard))
        busy["paper"].append(monitor.other_cpus())
        print(f"paper run {i}: {paper[-1][0]:.1f} s, {paper[-1][2]} instances, "
              f"other processes {busy['paper'][-1]} CPUs", file=sys.stderr)
    load_end = os.getloadavg()

    if args.dump:
        from densenas.fileio import write_json

        write_json(args.dump, {"ours": [r for _, r in ours], "paper": [r for _, r, _ in paper]})
    ours_wall = statistics.mean(w for w, _ in ours)
    paper_wall = statistics.mean(w for w, _, _ in paper)
    a_ours = agreement(ours[0][1], ours[1][1])
    a_paper = agreement(paper[0][1], paper[1][1])
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    import torch

    lines = [
        f"## Profiling protocol: densenas vs the paper{' (' + args.title + ')' if args.title else ''} "
        "(`benchmarks/profile_protocol.py`)",
        "",
        f"Machine: {hostinfo.cpu_model()}, {hostinfo.usable_cpus()} usable CPUs, {args.threads} threads, "
        f"torch {torch.__version__}, Python {platform.python_version()}, backend torch-cpu, batch 1, fp32. "
        f"Date: {date}. Load average at start / end: {load_start[0]:.2f} / {load_end[0]:.2f}; CPUs kept busy by "
        f"other processes during each run: densenas {busy['ours']}, paper {busy['paper']} "
        "(other work on the host spoils both protocols alike).",
        "",
        f"Command: `python benchmarks/profile_protocol.py {' '.join(sys.argv[1:] if argv is None else argv)}`",
        "",
        f"Space `{args.space}`: {len(ours[0][1])} unique op signatures, {paper[0][2]} op instances.",
        "",
        "| protocol | what is measured | wall time per full-space run (s) | rows within 3% | rows within 5% "
        "| median abs diff % | p90 abs diff % | run 2 / run 1 (median) | within 5% after rescaling |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| densenas (default protocol) | {len(ours[0][1])} unique signatures, adaptive, interleaved, median "
        f"| {ours[0][0]:.1f}, {ours[1][0]:.1f} | {a_ours['within_3pct']:.0%} | {a_ours['within_5pct']:.0%} "
        f"| {a_ours['median_abs_pct']:.2f} | {a_ours['p90_abs_pct']:.2f} | {a_ours['median_ratio']:.3f} "
        f"| {a_ours['within_5pct_rescaled']:.0%} |",
        f"| paper ({args.paper_runs} runs, first {args.paper_discard} dropped, mean of time.time()) "
        f"| {paper[0][2]} instances, no de-duplication | {paper[0][0]:.1f}, {paper[1][0]:.1f} "
        f"| {a_paper['within_3pct']:.0%} | {a_paper['within_5pct']:.0%} | {a_paper['median_abs_pct']:.2f} "
        f"| {a_paper['p90_abs_pct']:.2f} | {a_paper['median_ratio']:.3f} | {a_paper['within_5pct_rescaled']:.0%} |",
        "",
        f"Wall-time ratio paper / densenas: **{paper_wall / ours_wall:.1f}x** (mean of two runs each). "
        "Repeatability is between the two runs of the same protocol, row by row "
        "(densenas: per signature; paper: per instance). 'After rescaling' divides run 2 by the median "
        "run-2/run-1 ratio first: what is left is per-op disagreement, not a host-wide speed shift.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section(text, args.section, path=args.results)
        print(f"wrote {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
