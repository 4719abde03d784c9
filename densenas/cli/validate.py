"""``densenas lut validate``: how true a LUT is, on random networks measured end to end;
``--calibrate`` fits and stores what the sum of ops misses."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from densenas.console import err, out, print_json, warn

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def validate(
    lut: Annotated[str, typer.Argument(help="A LUT file, or a shipped name SPACE/BACKEND-DEVICE[@N].")],
    space: Annotated[str, typer.Option("--space", help="Search space to draw networks from (name or YAML path).")],
    samples: Annotated[int, typer.Option("--samples", min=1, help="Random networks to measure.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random networks (and of the CV split).")] = 0,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write a predicted-vs-measured scatter PNG here.")] = None,
    calibrate: Annotated[bool, typer.Option(
        "--calibrate", help="Fit a per-network offset and scale, report before/after (2-fold cross-validated) "
                            "and store them in the LUT.")] = False,
    out_path: Annotated[Optional[Path], typer.Option(
        "--out", help="With --calibrate: write the calibrated LUT here instead of rewriting LUT in place.")] = None,
    remeasure_ops: Annotated[bool, typer.Option(
        "--remeasure-ops", help="Also time the networks' ops afresh, interleaved with the networks: the "
                                "sum-of-ops model's own error, free of drift since the LUT was measured.")] = False,
    allow_busy: Annotated[bool, typer.Option(
        "--allow-busy", help="With --calibrate: store a fit measured while other processes kept the host busy.")] = False,
    csv_path: Annotated[Optional[Path], typer.Option(
        "--csv", help="Also write one row per network (net_config, predicted_ms, measured_ms, ...) to this CSV file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict random networks from the LUT, measure them on its backend, report MAPE, ±5%/±10% shares and Spearman."""
    from rich.progress import Progress

    from densenas.lut.validate import validate_lut

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("measuring networks", total=None)
        result = validate_lut(lut, space, samples=samples, seed=seed, plot=plot, calibrate=calibrate,
                              out=out_path, remeasure_ops=remeasure_ops, allow_busy=allow_busy,
                              on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    for note in result.notes:
        warn(note)
    d = result.to_dict()
    if csv_path is not None:
        from densenas.lut.frames import validation_frame, write_frame

        d["csv"] = str(write_frame(validation_frame(result), csv_path, "csv"))
        err.print(f"wrote {csv_path}")
    if as_json:
        print_json(d)
        return
    out.print(f"{result.lut} on {result.backend} ({result.device}, {result.threads} threads, batch {result.batch}): "
              f"{result.before.samples} random {result.space} networks")
    rows = [("LUT as is", result.before)]
    if result.after is not None:
        rows.append(("calibrated (2-fold CV)", result.after))
    if result.interleaved is not None:
        rows.append(("ops re-measured alongside", result.interleaved))
    if result.noise_floor is not None:
        rows.append(("noise floor (host vs itself)", result.noise_floor))
    for label, acc in rows:
        rho = "n/a" if acc.spearman is None else f"{acc.spearman:.3f}"
        out.print(f"  {label:<28} MAPE {acc.mape:5.2f}%  within ±5% {100 * acc.within_5pct:5.1f}%  "
                  f"within ±10% {100 * acc.within_10pct:5.1f}%  max |err| {acc.max_abs_error_pct:5.1f}%  "
                  f"median err {acc.median_error_pct:+5.1f}%  Spearman {rho}")
    if result.calibration is not None:
        c = result.calibration
        out.print(f"  calibration: scale {c.scale:.4f}, per layer {c.per_layer_ms:+.4f} ms, "
                  f"network offset {c.network_offset_ms:+.4f} ms "
                  f"(fitted on {c.fitted_on}); "
                  + (f"written to {result.calibrated_lut}" if result.calibration_stored else "not stored"))
    if result.plot:
        out.print(f"  plot: {result.plot}")


def register(app: typer.Typer) -> None:
    """Adds ``validate`` to the ``lut`` sub-app that ``densenas.cli.lut`` owns."""
    from densenas.cli.lut import lut_app

    lut_app.command("validate")(validate)
