"""What several commands share: options declared alike, and for the jobs that run on
several processes (``search``, ``train``) the torchrun re-launch of the command line for
``--nproc N`` and one report of a user error for all ranks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Optional, TypeVar

import typer

from densenas.errors import DensenasError

T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
OutOpt = Annotated[Optional[Path], typer.Option(
    "--out", help="Run directory (default: a new one under runs/, named by the job and the time).")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu or cuda (under torchrun: each rank's own GPU).")]
WorkersOpt = Annotated[Optional[int], typer.Option(
    "--workers", help="Data-loading worker processes per process (default: 0 for the built-in data).")]
NprocOpt = Annotated[Optional[int], typer.Option(
    "--nproc", help="Run N processes with torch.distributed on this host (NCCL on GPUs, gloo on CPU).")]


def relaunch(ctx: typer.Context, nproc: int, device: str, **fixed: Any) -> None:
    """Run this command again under torchrun on ``nproc`` processes: the options it was
    given, but ``--nproc``, with ``fixed`` (by parameter name) in place of what was given."""
    from densenas.runtime import launch

    argv = [ctx.info_name]
    for param in ctx.command.params:
        value = fixed.get(param.name, ctx.params[param.name])
        if param.name == "nproc" or value is None or value is False:
            continue
        argv += [param.opts[0]] if value is True else [param.opts[0], str(value)]
    code = launch(nproc, argv, device)
    if code:
        raise typer.Exit(code)


def main_result(job: Callable[[], T]) -> T | None:
    """``job()``'s result on the main process, None on torchrun's other ranks. A user error
    is rank 0's to report; the other ranks leave with exit code 2, quietly."""
    from densenas.runtime import is_main_process

    main = is_main_process()
    try:
        result = job()
    except DensenasError:
        if main:
            raise
        raise typer.Exit(2) from None
    return result if main else None
