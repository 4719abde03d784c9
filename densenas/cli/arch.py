"""``densenas arch import|export|show``: derived architectures and the paper's net_config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from densenas.console import err, out, print_json

arch_app = typer.Typer(help="Derived architectures: arch.json and the paper's net_config.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@arch_app.command("import")
def import_(
    net_config: Annotated[str, typer.Argument(help="The paper's net_config string ('[[16, 24], ...]|...').")],
    space: Annotated[str, typer.Option(
        "--space", help="Space whose stem and input size the network uses (name or YAML path).")],
    classes: Annotated[Optional[int], typer.Option(
        "--classes", min=1, help="Classes of the classifier (default: the space's; the paper's ImageNet networks: 1000).")] = None,
    out_path: Annotated[Path, typer.Option("--out", help="Where to write arch.json.")] = Path("arch.json"),
    as_json: JsonOpt = False,
) -> None:
    """Convert a net_config string into arch.json: any whole network the string describes.

    It is mapped onto the space's blocks when it is one of its paths (what search-side
    commands need); when it is not, it is written all the same and the reason is printed."""
    from densenas.arch import decode_net_config, try_fit
    from densenas.space import SearchSpace

    s = SearchSpace.load(space)
    arch, unfit = try_fit(decode_net_config(net_config, s, num_classes=classes), s)
    arch.save(out_path)
    if as_json:
        print_json({"arch": str(out_path), "blocks": len(arch.blocks), "num_classes": arch.num_classes,
                    "fits_space": unfit is None, **({"fit_error": unfit} if unfit else {})})
        return
    err.print(f"wrote {out_path} ({len(arch.blocks)} blocks, {arch.num_classes} classes)")
    if unfit:
        err.print(f"note: not a path of space {s.name} ({unfit.split(': ', 1)[-1]}); it trains, exports and "
                  "benches as a whole network, but cannot inherit supernet weights from a search of that space",
                  markup=False)


@arch_app.command("export")
def export(arch_path: Annotated[Path, typer.Argument(help="arch.json")], as_json: JsonOpt = False) -> None:
    """Print the paper's net_config string for an arch.json."""
    from densenas.arch import load_arch, to_net_config

    cfg = to_net_config(load_arch(arch_path))
    if as_json:
        print_json({"net_config": cfg})
    else:
        typer.echo(cfg)


@arch_app.command("show")
def show(
    arch_path: Annotated[Path, typer.Argument(help="arch.json")],
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Draw the network to this PNG.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Blocks, widths, ops, MACs and params of a derived architecture."""
    from densenas.arch import load_arch
    from densenas.archinfo import summarize

    arch = load_arch(arch_path)
    info = summarize(arch)
    if plot is not None:
        from densenas.plots import plot_arch

        plot_arch(arch, plot)
        info["plot"] = str(plot)
        err.print(f"wrote {plot}")
    if as_json:
        print_json(info)
        return
    t = Table("#", "block", "in->out", "stride", "fm", "head op", "stack ops", "MACs (M)", "params (K)",
              title=f"{arch_path} ({arch.space}, {arch.input_size}x{arch.input_size}, {arch.num_classes} classes)")
    for b in info["blocks"]:
        t.add_row(str(b["index"]), "-" if b["block_id"] is None else str(b["block_id"]),
                  f"{b['in_ch']}->{b['out_ch']}", str(b["stride"]),
                  str(b["fm"]), b["head_op"], ", ".join(b["stack_ops"]) or "-",
                  f"{b['macs'] / 1e6:.2f}", f"{b['params'] / 1e3:.1f}")
    out.print(t)
    out.print(f"total: {info['macs'] / 1e6:.2f} M MACs, {info['params']:,} params, {info['layers']} layers")


def register(app: typer.Typer) -> None:
    app.add_typer(arch_app, name="arch")
