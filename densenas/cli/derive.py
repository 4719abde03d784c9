"""``densenas derive``: a derived network (arch.json) from a search's soft architecture."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from densenas.console import err, out, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def derive(
    run: Annotated[Optional[Path], typer.Option(
        "--run", help="A search run directory (reads its arch_params.json and run.json).")] = None,
    arch_params: Annotated[Optional[Path], typer.Option(
        "--arch-params", help="An arch_params.json (give --space too).")] = None,
    space: Annotated[Optional[str], typer.Option(
        "--space", help="Search space: a shipped name or a YAML path (default: the run's).")] = None,
    lut: Annotated[Optional[str], typer.Option(
        "--lut", help="LUT file or shipped name: predicts latency, and is the cost of --budget.")] = None,
    budget: Annotated[Optional[float], typer.Option(
        "--budget", help="Most probable network whose cost is within this (ms for latency, M MACs for flops, "
                         "M params for params), found exactly.")] = None,
    cost: Annotated[str, typer.Option(
        "--cost", help="What --budget limits: latency (needs --lut), flops or params.")] = "latency",
    num_classes: Annotated[Optional[int], typer.Option(
        "--num-classes", min=1, help="Classes of the derived network (default: the run's, else the space's).")] = None,
    out_path: Annotated[Optional[Path], typer.Option(
        "--out", help="Where to write arch.json (default: RUN_DIR/arch.json, else ./arch.json).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Derive a network (arch.json): Viterbi route and argmax ops, or the most probable one within --budget."""
    from densenas.choices import CostType
    from densenas.derive import load_derive_inputs, run_derive

    CostType.parse(cost, "--cost")
    inputs = load_derive_inputs(run=run, arch_params=arch_params, space=space, lut=lut, num_classes=num_classes)
    target = out_path or (run / "arch.json" if run is not None else Path("arch.json"))
    report = run_derive(inputs, target, budget=budget, cost_type=cost)
    if as_json:
        print_json(report)
        return
    title = f"{report['space']}: {'Viterbi' if report['method'] == 'viterbi' else 'exact budget'} derivation"
    t = Table("#", "block", "in->out", "stride", "head op", "stack ops", title=title)
    if report["latency_ms"] is not None:
        t.add_column("latency (ms)", justify="right")
    for b in report["blocks"]:
        row = [str(b["index"]), str(b["block_id"]), f"{b['in_ch']}->{b['out_ch']}", str(b["stride"]),
               b["head_op"], ", ".join(b["stack_ops"]) or "-"]
        if report["latency_ms"] is not None:
            row.append(f"{b['latency_ms']:.4f}")
        t.add_row(*row)
    out.print(t)
    if "cost" in report:
        c = report["cost"]
        limit = "no limit" if report["budget"] is None else f"budget {report['budget']:g} {c['unit']}"
        out.print(f"{c['type']}: {c['value']:.4f} {c['unit']} ({limit})")
    if report["latency_ms"] is not None:
        out.print(f"predicted latency: {report['latency_ms']:.4f} ms on {report['lut']}")
    out.print(f"log-probability: {report['log_prob']:.4f}")
    err.print(f"wrote {report['arch']}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("derive")(derive)
