"""``densenas bench``: end-to-end latency of a derived network on a profiler backend,
beside the LUT's prediction for it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from densenas.cli.profile import BACKEND_HELP
from densenas.console import err, out, print_json, warn

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def bench(
    arch_path: Annotated[Path, typer.Option("--arch", help="The derived architecture (arch.json).")],
    backend: Annotated[str, typer.Option(
        "--backend", help=BACKEND_HELP)],
    batch: Annotated[Optional[int], typer.Option(
        "--batch", min=1, help="Batch size; default the LUT's, else 1.")] = None,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", min=1, help="Host threads; default the LUT's, else all usable CPUs.")] = None,
    precision: Annotated[Optional[str], typer.Option(
        "--precision", help="fp32 or fp16; default the LUT's, else fp32.")] = None,
    lut: Annotated[Optional[str], typer.Option(
        "--lut", help="A LUT (file or shipped name) whose prediction to compare with.")] = None,
    protocol: Annotated[Optional[str], typer.Option(
        "--protocol", help="Measurement protocol (a preset: default, fast; and/or key=value settings); "
                           "default the LUT's recorded protocol, else the default one.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure a derived network end to end with the LUT's protocol; with --lut, show the prediction and its error."""
    from densenas.arch import load_arch
    from densenas.bench import bench_arch
    from densenas.lut.profile import parse_protocol

    arch = load_arch(arch_path)
    result = bench_arch(arch, backend, arch_path=str(arch_path), batch=batch, threads=threads,
                        precision=precision, lut=lut,
                        protocol=parse_protocol(protocol) if protocol is not None else None,
                        log=lambda msg: err.print(msg, markup=False))
    for note in result.notes:
        warn(note)
    if as_json:
        print_json(result.to_dict())
        return
    m = result.measurement
    out.print(f"{arch_path} on {result.backend} ({result.device}, {result.threads} threads, batch {result.batch}, "
              f"{result.precision}): median {m.median_ms:.4f} ms, p10 {m.p10_ms:.4f}, p90 {m.p90_ms:.4f}, "
              f"IQR {m.iqr_ms:.4f} ({m.samples} samples)")
    if result.predicted is not None:
        p = result.predicted
        out.print(f"LUT {result.lut}: predicted {p.total:.4f} ms ({p.terms()}); "
                  f"predicted/measured {p.total / m.median_ms:.3f}, error {result.error_pct:+.1f}%")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
