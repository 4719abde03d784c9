"""``densenas space list|show``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from densenas.console import out, print_json

space_app = typer.Typer(help="Inspect search spaces.", no_args_is_help=True)

SpaceArg = Annotated[str, typer.Argument(help="A shipped space name (mbv2, resnet, mbv2-tiny) or a YAML path.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


@space_app.command("list")
def list_spaces(as_json: JsonOpt = False) -> None:
    """The shipped search spaces."""
    from densenas.space import SearchSpace, shipped_spaces

    rows = []
    for name in shipped_spaces():
        s = SearchSpace.load(name)
        rows.append({"name": name, "description": s.config.description, "input_size": s.input_size,
                     "blocks": len(s.blocks) - 1, "num_paths": s.num_paths,
                     "unique_ops": len(s.unique_signatures())})
    if as_json:
        print_json({"spaces": rows})
        return
    t = Table("space", "input", "blocks", "paths", "unique ops", "description")
    for r in rows:
        t.add_row(r["name"], str(r["input_size"]), str(r["blocks"]), str(r["num_paths"]),
                  str(r["unique_ops"]), r["description"])
    out.print(t)


@space_app.command("show")
def show(space: SpaceArg, as_json: JsonOpt = False) -> None:
    """Blocks, widths, feature maps, edges, layers, paths and unique op signatures."""
    from densenas.space import SearchSpace

    s = SearchSpace.load(space)
    d = s.describe()
    if as_json:
        print_json(d)
        return
    t = Table("block", "ch", "fm", "stage", "layers", "in from", "out to", title=f"space {s.name} ({s.source})")
    for b in s.blocks:
        label = "final conv" if b.is_final else str(b.id)
        outs = ", ".join(f"{d}{'/s2' if st == 2 else ''}" for d, st in zip(b.out_edges, b.out_strides))
        t.add_row(label, str(b.ch), str(b.fm), str(b.stage), str(b.num_layers),
                  ", ".join(map(str, b.in_edges)) or "stem", outs or "classifier")
    out.print(t)
    out.print(f"head ops: {', '.join(s.head_primitives)}")
    out.print(f"stack ops: {', '.join(s.stack_primitives)}")
    out.print(f"candidate paths: {d['num_paths']}  architectures: 10^{d['log10_num_archs']:.1f}  "
              f"unique op signatures: {d['unique_ops']}  op instances: {d['op_instances']}")


def register(app: typer.Typer) -> None:
    app.add_typer(space_app, name="space")
