"""``densenas quickstart``: the whole job end to end on embedded defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from densenas.console import err, out, print_json
from densenas.lut.profile import ENV_PROTOCOL


def quickstart(
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run directory; default runs/quickstart-<time>. An existing one is resumed.")] = None,
    backend: Annotated[str, typer.Option("--backend", help="Backend to profile on and measure with.")] = "onnxruntime",
    epochs: Annotated[Optional[int], typer.Option("--epochs", min=1, help="Search epochs (default: the space's); the weight-only warm-up keeps its share of them.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Search seed (default: the space's).")] = None,
    networks: Annotated[int, typer.Option("--networks", min=4, help="Networks the LUT's in-context costs are fitted on.")] = 48,
    protocol: Annotated[Optional[str], typer.Option("--protocol", envvar=ENV_PROTOCOL, help="Profiling protocol, as for `densenas profile --protocol` (e.g. fast).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Profile, search, derive, export and measure: the whole job on embedded defaults."""
    from densenas.lut.profile import parse_protocol
    from densenas.quickstart import default_run_dir, run_quickstart

    result = run_quickstart(out_dir or default_run_dir(), backend=backend, epochs=epochs, seed=seed, networks=networks,
                            protocol=parse_protocol(protocol),
                            log=lambda m: err.print(m, soft_wrap=True, markup=False))
    d = result.to_dict()
    if as_json:
        print_json(d)
        return
    t = Table("#", "in->out", "stride", "head op", "stack ops", title=f"derived network ({d['space']})")
    for i, b in enumerate(d["blocks"]):
        t.add_row(str(i), f"{b['in_ch']}->{b['out_ch']}", str(b["stride"]), b["head_op"], ", ".join(b["stack_ops"]) or "-")
    out.print(t)
    out.print(f"net_config: {d['net_config']}")
    out.print(f"MACs {d['macs'] / 1e6:.2f} M, params {d['params'] / 1e6:.3f} M, search val top-1 {d['search_top1']:.2f}%")
    out.print(f"latency on {d['backend']} ({d['device']}), batch 1: predicted {d['predicted_latency_ms']:.3f} ms "
              f"from the LUT, measured {d['measured_latency_ms']:.3f} ms (p90 {d['measured_p90_ms']:.3f}); "
              f"error {d['prediction_error_pct']:+.1f}%")
    out.print(f"ONNX parity with PyTorch: max |diff| {d['onnx_max_abs_diff']:.2e}")
    ref = d.get("lut_refinement")
    if ref:
        for label, acc in (("in-context costs", ref["held_out"]["refined"]), ("isolated sum", ref["held_out"]["isolated_sum"]),
                           ("noise floor", ref["noise_floor"])):
            if acc:
                out.print(f"LUT on {acc['samples']} held-out networks, {label}: MAPE {acc['mape']:.1f}%, "
                          f"within ±5% {100 * acc['within_5pct']:.0f}%, within ±10% {100 * acc['within_10pct']:.0f}%")
        out.print(ref["reason"])
    out.print("files:")
    for key in ("lut", "search_dir", "arch", "onnx"):
        out.print(f"  {key:<11}{d[key]}")
    out.print("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in d["timings_s"].items()))
    out.print(f"next: densenas train --arch {d['arch']}   (retrain the network on the digits data)")
    out.print(f"      densenas lut validate {d['lut']} --space {d['space']} --samples 30 --calibrate"
              "   (how far to trust this LUT, and a calibration for it)")


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart)
