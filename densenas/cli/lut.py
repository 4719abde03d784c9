"""``densenas lut list|show|diff|export|check|merge|import-legacy``: inspect and manage latency LUTs.

Other command modules may add commands to ``lut_app`` (e.g. ``lut validate``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from densenas.console import err, out, print_json
from densenas.errors import DensenasError

lut_app = typer.Typer(help="Latency lookup tables: list, show, compare, check, merge, import.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
LutArg = Annotated[str, typer.Argument(help="A LUT file, or a shipped name SPACE/BACKEND-DEVICE[@N] (newest by default).")]


@lut_app.command("list")
def list_luts(as_json: JsonOpt = False) -> None:
    """The shipped LUTs under luts/."""
    from densenas.lut.store import list_shipped

    rows = list_shipped()
    if as_json:
        print_json({"luts": rows})
        return
    t = Table(title="shipped LUTs (luts/)")
    t.add_column("name", no_wrap=True)
    for col in ("backend", "device", "batch", "rows"):
        t.add_column(col)
    for r in rows:
        if "error" in r:
            t.add_row(r["name"], "[red]unreadable[/red]", r["error"], "", "")
            continue
        name = r["name"] + ("" if r["newest"] else " (old)")
        t.add_row(name, r["backend"], r["device"], f"{r['batch']} {r['precision']}", str(r["rows"]))
    out.print(t)


def show_dict(table: Any, *, with_rows: bool = False) -> dict[str, Any]:
    """The JSON `lut show` prints: the summary keys first, then every provenance field."""
    from densenas.lut.store import LUT_SCHEMA

    meta = {k: v for k, v in table.meta.items() if k != "schema"}
    d: dict[str, Any] = {
        "path": table.source,
        "schema_version": LUT_SCHEMA,
        "lut_version": table.lut_version,
        "backend": table.backend,
        "device": table.device,
        "rows": len(table.rows),
        "batch": table.batch,
        "precision": table.precision,
        "input_size": table.input_size,
        "overhead_ms": table.overhead_ms,
        "calibration": table.calibration.to_lut(),
    }
    for k, v in meta.items():
        d.setdefault(k, v)
    if with_rows:
        d["entries"] = [table.rows[k].to_dict() for k in sorted(table.rows)]
    return d


@lut_app.command("show")
def show(
    lut: LutArg,
    rows: Annotated[bool, typer.Option("--rows", help="Also list every row (in JSON: an 'entries' list).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Provenance and statistics of one LUT."""
    from densenas.lut.store import load_lut

    table = load_lut(lut)
    d = show_dict(table, with_rows=rows)
    if as_json:
        print_json(d)
        return
    t = Table("field", "value", title=f"LUT {table.source}", show_header=False)
    for key in ("name", "schema_version", "lut_version", "backend", "backend_version", "device", "threads",
                "precision", "batch", "input_size", "spaces", "rows", "overhead_ms", "calibration", "timing_scope",
                "protocol", "versions", "date", "updated", "source", "note"):
        if d.get(key) not in (None, "", [], {}):
            value = d[key]
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, list):
                value = ", ".join(map(str, value))
            t.add_row(key, str(value))
    out.print(t)
    if rows:
        rt = Table("op", "c_in->c_out", "s", "hxw", "median ms", "IQR ms", "p10..p90 ms", "samples", "count")
        for k in sorted(table.rows):
            r = table.rows[k]
            s = r.signature
            rt.add_row(s.op, f"{s.c_in}->{s.c_out}", str(s.stride), f"{s.h}x{s.w}", f"{r.median_ms:.4f}",
                       f"{r.iqr_ms:.4f}", f"{r.p10_ms:.4f}..{r.p90_ms:.4f}", str(r.samples), str(r.count))
        out.print(rt)


@lut_app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="LUT A (file or shipped name).")],
    b: Annotated[str, typer.Argument(help="LUT B (file or shipped name).")],
    top: Annotated[int, typer.Option("--top", min=0, help="Rows with the largest |log ratio| to list.")] = 10,
    ignore_batch: Annotated[
        bool, typer.Option("--ignore-batch", help="Match rows by op and shape only (LUTs of another batch or precision).")
    ] = False,
    csv_path: Annotated[Optional[Path], typer.Option(
        "--csv", help="Also write every row (key, a_ms, b_ms, ratio, in) to this CSV file.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Median ratio B/A per common row, rows only one side has, and a summary."""
    import math

    from densenas.lut.store import diff_tables, load_lut

    ta, tb = load_lut(a), load_lut(b)
    d = diff_tables(ta, tb, ignore_run=ignore_batch)
    if csv_path is not None:
        from densenas.lut.frames import diff_frame, write_frame

        write_frame(diff_frame(ta, tb, ignore_run=ignore_batch), csv_path, "csv")
        d["csv"] = str(csv_path)
        err.print(f"wrote {csv_path}")
    if as_json:
        print_json(d)
        return
    s = d["summary"]
    out.print(f"A: {d['a']}\nB: {d['b']}")
    out.print(f"common rows {s['common']}, only in A {s['only_in_a']}, only in B {s['only_in_b']}")
    if not s["common"] and not ignore_batch and (ta.batch, ta.precision) != (tb.batch, tb.precision):
        out.print(f"note: A is batch {ta.batch} {ta.precision}, B batch {tb.batch} {tb.precision}; "
                  "--ignore-batch matches rows by op and shape")
    if "median_ratio" in s:
        out.print(f"B/A median ratio {s['median_ratio']:.3f}, geometric mean {s['geomean_ratio']:.3f}, "
                  f"min {s['min_ratio']:.3f}, max {s['max_ratio']:.3f}")
    ranked = sorted((r for r in d["rows"] if r["ratio"]), key=lambda r: -abs(math.log(r["ratio"])))[:top]
    if ranked:
        t = Table("row", "A ms", "B ms", "B/A", title="largest differences")
        for r in ranked:
            t.add_row(r["key"], f"{r['a_ms']:.4f}", f"{r['b_ms']:.4f}", f"{r['ratio']:.3f}")
        out.print(t)


@lut_app.command("export")
def export(
    lut: LutArg,
    to: Annotated[str, typer.Option("--to", help="Table format: csv or parquet (Parquet keeps the provenance).")],
    out_path: Annotated[Optional[Path], typer.Option(
        "--out", help="File to write; default SPACE-BACKEND-DEVICE@N.csv|parquet here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write a LUT's rows as a table: one row per op signature, its fields and statistics as columns."""
    from densenas.lut.frames import FORMATS, table_to_frame, write_frame
    from densenas.lut.store import load_lut

    if to not in FORMATS:
        raise DensenasError(f"--to must be one of {', '.join(FORMATS)}, got {to!r}")
    table = load_lut(lut)
    if out_path is None:
        out_path = Path(f"{table.name.replace('/', '-')}@{table.lut_version}.{to}")
    write_frame(table_to_frame(table), out_path, to)
    if as_json:
        print_json({"lut": table.source, "out": str(out_path), "format": to, "rows": len(table.rows)})
    else:
        out.print(f"{out_path}: {len(table.rows)} rows of {table.source} ({to})")


@lut_app.command("check")
def check(
    lut: LutArg,
    space: Annotated[str, typer.Option("--space", help="Search space the LUT should cover (name or YAML path).")],
    batch: Annotated[Optional[int], typer.Option("--batch", min=1, help="Batch to check for; default the LUT's.")] = None,
    precision: Annotated[Optional[str], typer.Option("--precision", help="Precision to check for; default the LUT's.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """What the space needs that the LUT lacks (exit 0 complete, 1 incomplete, 2 mismatch).

    Missing rows are listed with the command that fills them; a batch or precision other
    than the LUT's is a user error (exit 2)."""
    from densenas.lut.store import load_lut
    from densenas.space import SearchSpace

    s = SearchSpace.load(space)
    result = load_lut(lut).coverage(s, batch=batch, precision=precision)
    missing = result["missing"]
    if as_json:
        print_json(result)
    elif not missing:
        out.print(f"{result['lut']}: complete for {s.name} ({result['needed']} op signatures)")
    else:
        out.print(f"{result['lut']}: missing {len(missing)} of {result['needed']} op signatures {s.name} needs:")
        for key in missing:
            out.print(f"  {key}")
        if "hint" in result:
            out.print(f"note: {result['hint']}")
        out.print(f"fill them with: {result['fill_command']}")
    if missing:
        raise typer.Exit(1)


@lut_app.command("merge")
def merge(
    luts: Annotated[list[str], typer.Argument(help="Two or more LUT shards of the same fingerprint.")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the merged LUT.")],
    as_json: JsonOpt = False,
) -> None:
    """Merge shards measured with the same backend, device, threads, batch and precision."""
    from densenas.lut.profile import merge_tables
    from densenas.lut.store import load_lut

    merged, notes = merge_tables([load_lut(p) for p in luts])
    merged.save(out_path)
    for n in notes:
        err.print(f"note: {n}")
    if as_json:
        print_json({"lut": str(out_path), "rows": len(merged.rows), "merged_from": merged.meta["merged_from"], "notes": notes})
    else:
        out.print(f"{out_path}: {len(merged.rows)} rows merged from {len(luts)} files")


@lut_app.command("import-legacy")
def import_legacy_cmd(
    file: Annotated[Path, typer.Argument(help="A latency list of the paper's code release (lat_list_*).")],
    space: Annotated[str, typer.Option("--space", help="The ported space the list belongs to (mbv2, resnet).")],
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the LUT (JSON).")],
    as_json: JsonOpt = False,
) -> None:
    """Map every number of a legacy list onto its op signature and write a keyed LUT."""
    from densenas.lut.legacy import import_legacy
    from densenas.space import SearchSpace

    table, summary = import_legacy(file, SearchSpace.load(space))
    if "@" in out_path.name:
        from densenas.lut.profile import version_from_path

        table.meta["lut_version"] = version_from_path(out_path)
    table.save(out_path)
    d = {"lut": str(out_path), **summary.to_dict()}
    if as_json:
        print_json(d)
        return
    out.print(f"{out_path}: {summary.rows} rows from {summary.numbers} numbers of {file} "
              f"({summary.averaged} rows average several numbers)")
    for n in summary.notes:
        out.print(f"note: {n}")


@lut_app.command("refine")
def refine(
    lut: LutArg,
    space: Annotated[str, typer.Option("--space", help="Search space whose networks the costs are fitted on (name or YAML path).")],
    networks: Annotated[int, typer.Option("--networks", min=4, help="Networks to fit on (a covering sample); a quarter more are held out.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the networks.")] = 0,
    out_path: Annotated[Optional[Path], typer.Option("--out", help="Write the refined LUT here instead of rewriting LUT in place.")] = None,
    allow_busy: Annotated[bool, typer.Option("--allow-busy", help="Store a fit measured while other processes kept the host busy (recorded as such).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fit each row's cost inside whole networks timed as deployed; stored only when it predicts held-out networks better."""
    from rich.progress import Progress

    from densenas.lut.refine import refine_lut, print_refinement

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("timing networks", total=None)
        result = refine_lut(lut, space, networks=networks, seed=seed, out=out_path, allow_busy=allow_busy,
                            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
                            log=err.print)
    if as_json:
        print_json(result.to_dict())
    else:
        print_refinement(result, out.print)
    if not result.stored:
        if as_json:
            err.print(result.reason)
        raise typer.Exit(1)


@lut_app.command("diagnose")
def diagnose(
    lut: LutArg,
    space: Annotated[str, typer.Option("--space", help="Search space whose random networks are profiled (name or YAML path).")],
    networks: Annotated[int, typer.Option("--networks", min=1, help="Random networks to profile layer by layer.")] = 8,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Runs of each network under the profiler, after warm-up.")] = 50,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the networks.")] = 0,
    top: Annotated[int, typer.Option("--top", min=1, help="Rows to list, largest share of a network's error first.")] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Which ops the isolated timing gets wrong: every layer of whole networks, from the backend's own profiler, beside its LUT row."""
    from rich.progress import Progress

    from densenas.lut.diagnose import diagnose_lut, print_diagnosis

    with Progress(console=err, transient=True) as progress:
        task = progress.add_task("profiling networks layer by layer", total=networks)
        result = diagnose_lut(lut, space, networks=networks, runs=runs, seed=seed,
                              on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    if as_json:
        print_json(result.to_dict())
    else:
        print_diagnosis(result, out.print, top=top)


def register(app: typer.Typer) -> None:
    app.add_typer(lut_app, name="lut")
