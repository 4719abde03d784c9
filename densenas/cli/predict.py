"""``densenas predict``: predicted latency of a derived network, or the expected (chained)
cost of a soft architecture beside that of the network derived from it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from densenas.console import out, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def predict(
    arch: Annotated[Optional[Path], typer.Option("--arch", help="A derived architecture (arch.json).")] = None,
    arch_params: Annotated[Optional[Path], typer.Option(
        "--arch-params", help="A soft architecture (arch_params.json); give --space too.")] = None,
    space: Annotated[Optional[str], typer.Option(
        "--space", help="The soft architecture's space: a shipped name or a YAML path.")] = None,
    lut: Annotated[Optional[str], typer.Option("--lut", help="LUT file or shipped name (SPACE/BACKEND-DEVICE[@N]).")] = None,
    cost: Annotated[str, typer.Option("--cost", help="For --arch-params: latency (needs --lut), flops or params.")] = "latency",
    as_json: JsonOpt = False,
) -> None:
    """Predicted latency per block (--arch), or a soft architecture's chained cost beside its derived network's."""
    from densenas.choices import CostType
    from densenas.errors import DensenasError

    if (arch is None) == (arch_params is None):
        raise DensenasError("give either --arch arch.json or --arch-params FILE --space SPACE")
    CostType.parse(cost, "--cost")
    if arch is not None:
        _predict_arch(arch, lut, cost, as_json)
    else:
        _predict_soft(arch_params, space, lut, cost, as_json)


def _predict_arch(arch_path: Path, lut: str | None, cost: str, as_json: bool) -> None:
    from densenas.arch import load_arch
    from densenas.derive import predict_derived
    from densenas.errors import DensenasError
    from densenas.lut.store import load_lut

    if cost != "latency":
        raise DensenasError(f"--cost {cost} applies to --arch-params; `densenas arch show` gives a derived network's MACs and params")
    if lut is None:
        raise DensenasError("predicting a derived network's latency needs --lut (a LUT file or a shipped name)")
    arch, table = load_arch(arch_path), load_lut(lut)
    report = {"arch": str(arch_path), **predict_derived(arch, table),
              "notes": table.charge_notes(sig.with_run(table.batch, table.precision) for _, _, sig in arch.layers())}
    if as_json:
        print_json(report)
        return
    t = Table("part", "block", "ops", "latency (ms)", title=f"{arch_path} on {report['lut']}")
    for b in report["blocks"]:
        t.add_row(b["name"], "" if b["block_id"] is None else str(b["block_id"]), ", ".join(b["ops"]),
                  f"{b['latency_ms']:.4f}")
    out.print(t)
    out.print(f"predicted latency: {report['latency_ms']:.4f} ms ({report['terms']})")
    for note in report["notes"]:
        out.print(f"note: {note}", markup=False)


def _predict_soft(arch_params: Path, space: str | None, lut: str | None, cost: str, as_json: bool) -> None:
    from densenas.derive import load_derive_inputs, predict_soft

    report = predict_soft(load_derive_inputs(arch_params=arch_params, space=space, lut=lut), cost)
    report = {"arch_params": str(arch_params), **report}
    if as_json:
        print_json(report)
        return
    unit = report["unit"]
    out.print(f"{report['space']} ({report['cost_type']} from {report['source']})")
    out.print(f"  expected (chained, full softmax): {report['expected']:.4f} {unit}")
    out.print(f"  Viterbi-derived network:         {report['derived']:.4f} {unit}")
    out.print(f"  relaxation gap:                  {report['gap']:+.4f} {unit}")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
