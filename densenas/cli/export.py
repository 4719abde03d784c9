"""``densenas export``: a derived network as an ONNX file or a TensorRT engine,
checked against PyTorch before it is written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from densenas.console import err, out, print_json, warn

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def export(
    arch_path: Annotated[Path, typer.Option("--arch", help="The derived architecture (arch.json).")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the ONNX file or TensorRT engine.")],
    fmt: Annotated[str, typer.Option("--format", help="onnx or tensorrt.")] = "onnx",
    weights: Annotated[Optional[Path], typer.Option(
        "--weights", help="Trained weights from `densenas train` (a state_dict or a checkpoint with one), "
                          "or a search run's checkpoint.pt (the supernet's weights for this path); "
                          "without: seeded random weights.")] = None,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or fp16.")] = "fp32",
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size of the exported input.")] = 1,
    dynamic_batch: Annotated[bool, typer.Option(
        "--dynamic-batch", help="Make the batch dimension symbolic (parity is then checked at two batch sizes).")] = False,
    max_batch: Annotated[Optional[int], typer.Option(
        "--max-batch", min=1, help="With --format tensorrt --dynamic-batch: the largest batch the engine accepts "
                                   "(it is built for 1 to this, tuned for --batch); default the larger of 32 and "
                                   "--batch.")] = None,
    tolerance: Annotated[Optional[float], typer.Option(
        "--tolerance", help="Largest allowed |exported - PyTorch| output difference; default 1e-4 for fp32, "
                            "5% of the output's scale for fp16.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights and parity inputs.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Export a derived network to ONNX (optimised, BN folded, checked) or TensorRT."""
    from densenas.arch import load_arch
    from densenas.export import check_format, export_arch

    arch = load_arch(arch_path)
    profiler = check_format(fmt, precision, batch=batch, dynamic_batch=dynamic_batch, max_batch=max_batch)
    if weights is None:
        warn(f"no --weights: exporting {arch_path} with seeded random weights (seed {seed})")
    result = export_arch(arch, out_path, fmt=fmt, weights=weights, precision=precision, batch=batch,
                         dynamic_batch=dynamic_batch, max_batch=max_batch, tolerance=tolerance, seed=seed,
                         profiler=profiler)
    d = result.to_dict()
    if as_json:
        print_json(d)
        return
    for c in result.checks:
        err.print(f"parity at batch {c.batch}: max |{result.format} - PyTorch| = {c.max_abs_diff:.3g} "
                  f"(tolerance {c.tolerance:.3g})")
    what = (f"{d['nodes']} nodes, {d['batchnorm_nodes']} BatchNormalization" if result.format == "onnx"
            else result.runtime)
    if result.batch_profile is not None:
        what += ", batch min/opt/max {}/{}/{}".format(*result.batch_profile)
    out.print(f"wrote {out_path} ({result.format}, {precision}, input {'x'.join(map(str, result.input_shape))}"
              f"{', dynamic batch' if dynamic_batch else ''}; {what}; {d['size_bytes'] / 1e6:.2f} MB); "
              f"max abs diff {result.max_abs_diff:.3g}")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
