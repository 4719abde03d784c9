"""How accurate are LUTs profiled on the machine at hand? One command: for each space and
backend, profile a fresh LUT here, calibrate it (``lut validate --calibrate``), fit its
in-context costs (``lut refine``), and score all three predictions on held-out random
networks no fit saw, beside the host's noise floor; the table goes into
benchmarks/RESULTS.md and docs/lut-accuracy.md.

    python benchmarks/lut_accuracy.py                   # mbv2-tiny and mbv2, onnxruntime and torch-cpu
    python benchmarks/lut_accuracy.py --quick           # a functional smoke run (mbv2-tiny, onnxruntime, tiny sizes)
    python benchmarks/lut_accuracy.py --shipped         # the older check of the four shipped CPU LUTs

Run it on an idle host: every figure is only as good as the machine's agreement with
itself, which the noise-floor column states.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.results import write_section  # noqa: E402
from densenas.fileio import write_json  # noqa: E402

FRESH = ["mbv2-tiny=onnxruntime", "mbv2-tiny=torch-cpu", "mbv2=onnxruntime", "mbv2=torch-cpu"]
SHIPPED = ["mbv2-tiny=mbv2-tiny/onnxruntime-cpu", "mbv2-tiny=mbv2-tiny/torch-cpu",
           "mbv2=mbv2/onnxruntime-cpu", "mbv2=mbv2/torch-cpu"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--luts", nargs="+", default=SHIPPED, metavar="SPACE=LUT",
                   help="LUTs to validate, each with its space (default: the four shipped CPU LUTs)")
    p.add_argument("--profile", action="store_true",
                   help="profile each SPACE on the LUT's backend on this machine first and validate that LUT")
    p.add_argument("--threads", type=int, default=None, help="with --profile: host threads (default all usable)")
    p.add_argument("--protocol", default=None, help="with --profile: protocol preset/settings (default: default)")
    p.add_argument("--samples", type=int, default=30, help="random networks per LUT (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "lut-accuracy", help="scratch folder")
    p.add_argument("--plots", type=Path, default=ROOT / "docs", help="folder for the scatter PNGs")
    p.add_argument("--no-remeasure", action="store_true",
                   help="skip re-timing the networks' ops alongside them (the drift-free check of the model)")
    p.add_argument("--store", action="store_true", help="store each fitted calibration in the validated LUT file")
    p.add_argument("--no-write", action="store_true", help="print the table; leave RESULTS.md and the doc alone")
    p.add_argument("--shipped", action="store_true", help="validate shipped LUTs (--luts) instead of fresh ones")
    p.add_argument("--fresh", nargs="+", default=FRESH, metavar="SPACE=BACKEND",
                   help="spaces and backends to profile fresh here (default: mbv2-tiny and mbv2 on onnxruntime and torch-cpu)")
    p.add_argument("--networks", type=int, default=200, help="networks the in-context fit sees (default 200)")
    p.add_argument("--held-out", type=int, default=80, help="held-out networks that score the fits (default 80)")
    p.add_argument("--quick", action="store_true", help="a smoke run: mbv2-tiny on onnxruntime, fast protocol, tiny sizes")
    args = p.parse_args(argv)
    if args.quick:
        args.fresh, args.networks, args.held_out, args.samples = ["mbv2-tiny=onnxruntime"], 8, 4, 4
        args.protocol = args.protocol or "fast"
        args.no_write = True
    return args


def backend_of(lut_name: str) -> str:
    """``mbv2/onnxruntime-cpu`` -> ``onnxruntime``; ``mbv2/torch-cpu`` -> ``torch-cpu``."""
    base = lut_name.split("/")[-1].split("@")[0].removesuffix(".json")
    return base if base.startswith("torch-") else base.rsplit("-", 1)[0]


def prepare_lut(space: str, lut_name: str, args: argparse.Namespace) -> tuple[Path, Path | None, str]:
    """A copy of the LUT with no calibration (so "before" is the plain sum of ops); with
    --profile a LUT measured here first. Returns (copy, file to store into, device)."""
    from densenas.lut.profile import parse_protocol, profile_space
    from densenas.lut.store import DEFAULT_CALIBRATION, load_lut, resolve_lut

    args.work.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9.-]+", "-", f"{Path(space).stem}-{lut_name}").strip("-")
    if args.profile:
        fresh = args.work / f"{slug}-profiled.json"
        profile_space(space, backend_of(lut_name), threads=args.threads, out=fresh, resume=fresh.exists(),
                      protocol=parse_protocol(args.protocol))
        source: Path = fresh
    else:
        source = resolve_lut(lut_name)
    table = load_lut(source)
    table.calibration = dict(DEFAULT_CALIBRATION)
    table.meta.pop("calibration_fit", None)
    plain = args.work / f"{slug}-plain.json"
    table.save(plain)
    return plain, source if args.store else None, table.device


def run_one(space: str, lut_name: str, args: argparse.Namespace) -> dict:
    from densenas.lut.store import load_lut
    from densenas.lut.validate import validate_lut

    from densenas.space import SearchSpace

    plain, store_into, lut_device = prepare_lut(space, lut_name, args)
    plot = args.plots / f"lut-accuracy-{SearchSpace.load(space).name}-{backend_of(lut_name)}.png"
    calibrated = plain.with_name(plain.name.replace("-plain", "-calibrated"))
    load_before = os.getloadavg()[0]
    r = validate_lut(str(plain), space, samples=args.samples, seed=args.seed, plot=plot, calibrate=True,
                     out=calibrated, remeasure_ops=not args.no_remeasure)
    if store_into is not None:
        target = load_lut(store_into)
        fitted = load_lut(calibrated)
        target.calibration = fitted.calibration
        target.meta["calibration_fit"] = fitted.meta["calibration_fit"]
        target.save(store_into)
    d = r.to_dict()
    d.update(lut_name=lut_name, lut_device=lut_device, lut_threads=load_lut(plain).meta.get("threads"),
             profiled_here=args.profile, plot=str(plot.relative_to(ROOT)) if plot.is_relative_to(ROOT) else str(plot),
             load_avg_1min=[round(load_before, 2), round(os.getloadavg()[0], 2)])
    return d


def pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def table_markdown(results: list[dict], argv: list[str], started: str, wall_s: float) -> str:
    rows = [
        "| LUT | backend, threads | networks | MAPE before | ±5% / ±10% before | max err before | Spearman "
        "| MAPE after (CV) | ±5% / ±10% after | max err after | scale, per layer, offset "
        "| ops re-measured alongside: MAPE, ±5% / ±10%, max err |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in results:
        b, a, c = d["before"], d["after"], d["calibration"]
        i = d.get("interleaved")
        inter = (f"{i['mape']:.1f}%, {pct(i['within_5pct'])} / {pct(i['within_10pct'])}, {i['max_abs_error_pct']:.1f}%"
                 if i else "not run")
        rows.append(
            f"| `{d['lut_name']}`{' (profiled here)' if d['profiled_here'] else ''} | {d['backend']}, {d['threads']} "
            f"| {b['samples']} | {b['mape']:.1f}% | {pct(b['within_5pct'])} / {pct(b['within_10pct'])} "
            f"| {b['max_abs_error_pct']:.1f}% | {b['spearman']:.3f} | {a['mape']:.1f}% "
            f"| {pct(a['within_5pct'])} / {pct(a['within_10pct'])} | {a['max_abs_error_pct']:.1f}% "
            f"| ×{c['scale']:.3f}, {c.get('per_layer_ms', 0.0) * 1000:+.1f} µs/layer, {c['network_offset_ms']:+.3f} ms "
            f"| {inter} |"
        )
    devices = sorted({d["device"] for d in results})
    loads = [x for d in results for x in d["load_avg_1min"]]
    lut_devices = sorted({d["lut_device"] for d in results})
    notes = [
        "",
        f"Measured {started} on {', '.join(devices)} ({platform.machine()}, {os.cpu_count()} CPUs visible), "
        f"1-minute load average {min(loads):.1f} to {max(loads):.1f} during the runs; {wall_s / 60:.1f} min in all. "
        f"LUTs measured on: {', '.join(lut_devices)}.",
        "",
        f"Command: `{' '.join(['python benchmarks/lut_accuracy.py', *argv])}`",
        "",
        "Before: the plain sum of the LUT's ops (each op's median less the per-call overhead, the overhead "
        "added once). After: `measured = scale × sum_of_ops + per_layer × layers + overhead + offset`, a Huber "
        "fit on relative "
        "errors, each network predicted by the fit on the other half of the sample (2-fold cross-validation). "
        "Ops re-measured alongside: the networks' ops timed again in the same interleaved rounds as the networks "
        "and summed the same way, which takes machine drift since the LUT was made out of the comparison and "
        "leaves the error of the sum-of-ops model itself. Target: every network within ±10%, 95% within ±5%.",
    ]
    return "\n".join(rows + notes)


def run_fresh(space: str, backend: str, args: argparse.Namespace) -> dict:
    """Profile ``space`` on ``backend`` here, calibrate a copy, refine that copy; the
    held-out networks of the refinement score the isolated sum, the calibration and the
    in-context costs alike (none of them was fitted on those networks)."""
    from densenas.lut.profile import parse_protocol, profile_space
    from densenas.lut.refine import refine_lut
    from densenas.lut.validate import validate_lut

    args.work.mkdir(parents=True, exist_ok=True)
    stem = args.work / f"fresh-{Path(space).stem}-{backend}"
    lut, calibrated, refined = (Path(f"{stem}-{kind}.json") for kind in ("profiled", "calibrated", "refined"))
    t0 = time.perf_counter()
    profiled = profile_space(space, backend, threads=args.threads, out=lut, force=True,
                             protocol=parse_protocol(args.protocol))
    profile_s = time.perf_counter() - t0
    # calibration networks drawn with another seed than the refinement's held-out ones
    cal = validate_lut(str(lut), space, samples=args.samples, seed=args.seed + 100, calibrate=True, out=calibrated)
    source = calibrated if cal.calibration_stored else lut
    t1 = time.perf_counter()
    r = refine_lut(str(source), space, networks=args.networks, held_out=args.held_out, seed=args.seed, out=refined)
    refine_s = time.perf_counter() - t1
    d = r.to_dict()
    d.update(calibration_stored=cal.calibration_stored, profile_s=round(profile_s, 1), refine_s=round(refine_s, 1),
             profile_refine_s=round(profile_s + refine_s, 1), lut_rows=len(profiled.table.rows),
             load_avg_1min=round(os.getloadavg()[0], 2))
    return d


def fresh_markdown(results: list[dict], argv: list[str], started: str, wall_s: float) -> str:
    rows = ["| space, backend (threads) | held-out networks | prediction | MAPE | ±5% / ±10% | max err | Spearman "
            "| profile + refine |", "|---|---|---|---|---|---|---|---|"]
    for d in results:
        h = d["held_out"]
        calibrated = "LUT calibrated" if d["calibration_stored"] else "LUT as is (calibration not kept)"
        for label, acc in (("isolated sum", h["isolated_sum"]), (calibrated, h["as_is"]),
                           ("in-context", h["refined"]), ("noise floor (host vs itself)", d["noise_floor"])):
            rho = "n/a" if acc["spearman"] is None else f"{acc['spearman']:.3f}"
            rows.append(f"| {d['space']}, {d['backend']} ({d['threads']}) | {acc['samples']} | {label} | {acc['mape']:.1f}% "
                        f"| {pct(acc['within_5pct'])} / {pct(acc['within_10pct'])} | {acc['max_abs_error_pct']:.1f}% | {rho} "
                        f"| {d['profile_s']:.0f} s + {d['refine_s']:.0f} s |")
    devices = sorted({d["device"] for d in results})
    return "\n".join(rows + [
        "",
        f"Measured {started} on {', '.join(devices)} ({platform.machine()}, {os.cpu_count()} CPUs visible); "
        f"{wall_s / 60:.1f} min in all; busy host during timing: "
        f"{', '.join(str(d['host_busy_cpus']) for d in results)} CPUs used by other processes.",
        "",
        f"Command: `{' '.join(['python benchmarks/lut_accuracy.py', *argv])}`",
        "",
        "Each LUT profiled here, then calibrated (`lut validate --calibrate`, its own random networks), then refined "
        "(`lut refine`: a covering sample of networks timed as deployed, rows' in-context costs fitted). All three "
        "predictions are scored on the refinement's held-out uniform random networks, which no fit saw; each of those "
        "is timed twice in the same rounds, and the noise floor scores one timing against the other.",
    ])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if not args.shipped:
        started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        t0 = time.perf_counter()
        fresh = []
        for spec in args.fresh:
            space, _, backend = spec.partition("=")
            print(f"profiling and refining {space} on {backend} ...", file=sys.stderr, flush=True)
            fresh.append(run_fresh(space, backend, args))
            write_json(args.work / "lut_accuracy_fresh.json", {"started": started, "argv": argv, "results": fresh})
        md = fresh_markdown(fresh, argv, started, time.perf_counter() - t0)
        print(md)
        if not args.no_write:
            write_section(md, "lut-accuracy-fresh", title="LUT accuracy on fresh LUTs (benchmarks/lut_accuracy.py)")
            write_section(md, "lut-accuracy-fresh", path=ROOT / "docs" / "lut-accuracy.md", title="Fresh LUTs, held out")
        return 0
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    t0 = time.perf_counter()
    results = []
    for spec in args.luts:
        space, _, lut_name = spec.partition("=")
        if not lut_name:
            raise SystemExit(f"--luts entries are SPACE=LUT, got {spec!r}")
        print(f"validating {lut_name} on {space} ({args.samples} networks) ...", file=sys.stderr, flush=True)
        d = run_one(space, lut_name, args)
        b, a = d["before"], d["after"]
        print(f"  before: MAPE {b['mape']:.1f}%, within 5% {pct(b['within_5pct'])}, 10% {pct(b['within_10pct'])}; "
              f"after (CV): MAPE {a['mape']:.1f}%, within 5% {pct(a['within_5pct'])}, 10% {pct(a['within_10pct'])}",
              file=sys.stderr, flush=True)
        if d.get("interleaved"):
            i = d["interleaved"]
            print(f"  ops re-measured alongside: MAPE {i['mape']:.1f}%, within 5% {pct(i['within_5pct'])}, "
                  f"10% {pct(i['within_10pct'])}", file=sys.stderr, flush=True)
        results.append(d)
        write_json(args.work / "lut_accuracy.json", {"started": started, "argv": argv, "results": results})
    md = table_markdown(results, argv, started, time.perf_counter() - t0)
    write_json(args.work / "lut_accuracy.json", {"started": started, "argv": argv, "results": results})
    print(md)
    if not args.no_write:
        write_section(md, "lut-accuracy", title="LUT accuracy (benchmarks/lut_accuracy.py)")
        write_section(md, "lut-accuracy", path=ROOT / "docs" / "lut-accuracy.md", title="Latest figures")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
