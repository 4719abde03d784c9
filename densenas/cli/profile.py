"""``densenas profile``: measure a space's unique op signatures on a backend into a LUT."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from densenas.console import err, out, print_json
from densenas.lut.profile import ENV_PROTOCOL
from densenas.lut.store import LutRow
from densenas.profilers import list_profilers
from densenas.signature import OpSignature

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
# the registered backends, installed plug-ins included, as this environment has them
BACKEND_HELP = f"Profiler backend: {', '.join(list_profilers())}."


def profile(
    space: Annotated[str, typer.Option("--space", help="Search space: a shipped name (mbv2, mbv2-tiny, resnet) or a YAML path.")],
    backend: Annotated[str, typer.Option("--backend", help=BACKEND_HELP)],
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size the ops are measured at.")] = 1,
    precision: Annotated[str, typer.Option("--precision", help="fp32 or fp16 (fp16 needs a GPU backend).")] = "fp32",
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="Host threads; default: the CPUs this process may use.")] = None,
    out_path: Annotated[
        Optional[Path],
        typer.Option("--out", "--lut", help="LUT file to write; default runs/luts/<space>/<backend>-<device>-b<batch>-<precision>.json."),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an existing --out file, skipping the rows it has.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing --out file measured differently.")] = False,
    shard: Annotated[Optional[str], typer.Option("--shard", help="Measure only the i-th of N deterministic slices (i/N); merge with `lut merge`.")] = None,
    protocol: Annotated[
        Optional[str],
        typer.Option(
            "--protocol",
            envvar=ENV_PROTOCOL,
            help="Measurement protocol: a preset (default, fast) and/or key=value settings, e.g. 'fast,chunk_size=4'.",
        ),
    ] = None,
    remeasure_noisy: Annotated[
        Optional[float],
        typer.Option("--remeasure-noisy", min=0.0, help="Also re-measure rows of the --out file whose IQR/median exceeds this (e.g. 0.25)."),
    ] = None,
    networks: Annotated[
        Optional[int],
        typer.Option("--networks", min=4, help="Then fit each row's in-context cost on this many networks timed as deployed (lut refine)."),
    ] = None,
    deployment: Annotated[
        Optional[str],
        typer.Option("--deployment", help="Backend options networks are deployed with, key=value (e.g. spinning=off); default the backend's own."),
    ] = None,
    allow_busy: Annotated[bool, typer.Option("--allow-busy", help="With --networks: store a fit measured on a busy host (recorded as such).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure every unique op signature of a space; each finished chunk is saved at once."""
    from densenas.lut.profile import parse_deployment, parse_protocol, parse_shard, profile_space

    proto = parse_protocol(protocol)
    shard_spec = parse_shard(shard)
    bar = _ProgressBar()
    try:
        result = profile_space(
            space, backend, batch=batch, precision=precision, threads=threads, out=out_path, resume=resume,
            force=force, shard=shard_spec, protocol=proto, remeasure_above=remeasure_noisy,
            networks=networks, deployment=parse_deployment(deployment), allow_busy=allow_busy,
            on_progress=bar.advance, on_start=bar.start,
            log=bar.log,
        )
    finally:
        bar.stop()
    d = result.to_dict()
    if as_json:
        print_json(d)
        return
    state = "complete" if d["complete"] else "incomplete"
    out.print(
        f"{d['lut']}: {d['rows']} rows ({d['measured']} measured, {d['remeasured']} of them again; {d['reused']} reused), "
        f"{state} for {d['space']}"
        f"{' shard ' + d['shard'] if d['shard'] else ''} on {d['backend']} ({d['device']}), batch {d['batch']}, "
        f"{d['precision']}, {d['threads']} threads; overhead {d['overhead_ms'] or 0:.4f} ms/call; {d['wall_s']:.1f} s"
    )
    if result.refinement is not None:
        from densenas.lut.refine import print_refinement

        print_refinement(result.refinement, out.print)


class _ProgressBar:
    """A rich progress bar on stderr, shown only once measuring starts (so an unavailable
    backend prints its one line and nothing else): ops done, elapsed, ETA, last op."""

    def __init__(self) -> None:
        self._progress = None
        self._task = None

    def start(self, done: int, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._progress = Progress(
            BarColumn(bar_width=24), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
            TimeRemainingColumn(), TextColumn("{task.description}"), console=err,
        )
        self._task = self._progress.add_task("", total=total, completed=done)
        self._progress.start()

    def advance(self, done: int, total: int, sig: OpSignature, row: LutRow) -> None:
        if self._progress is not None:
            desc = f"{sig.op} {sig.c_in}->{sig.c_out} s{sig.stride} {sig.h}x{sig.w}: {row.median_ms:.4f} ms"
            self._progress.update(self._task, completed=done, description=desc)

    def log(self, msg: str) -> None:
        (self._progress.console if self._progress is not None else err).print(msg)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
