"""``densenas search``: the DenseNAS architecture search, on one process or under torchrun."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer
from rich.table import Table

from densenas.console import out, print_json


def search(
    space: Annotated[Optional[str], typer.Option("--space", help="Search space: a shipped name or a YAML path (default: mbv2-tiny).")] = None,
    lut: Annotated[Optional[str], typer.Option("--lut", help="LUT file or shipped name (default: the space's shipped CPU LUT).")] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="'digits', an image folder (train/, val/) or a packed dataset (default: digits).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Search epochs (default: the space's search.epochs).")] = None,
    arch_update_epoch: Annotated[Optional[int], typer.Option("--arch-update-epoch", help="First epoch with architecture updates; before it only weights train, on uniformly sampled ops.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Images per step per process.")] = None,
    cost: Annotated[Optional[str], typer.Option("--cost", help="Cost in the loss: latency (from the LUT) or flops (computed MACs).")] = None,
    sub_loss_factor: Annotated[Optional[float], typer.Option("--sub-loss-factor", help="Weight of the cost term (0: accuracy only).")] = None,
    target_latency: Annotated[Optional[float], typer.Option("--target-latency", help="Steer the latency to this many ms (up or down) instead of only down.")] = None,
    out_dir: Annotated[Optional[str], typer.Option("--out", help="Run directory (default: runs/search-SPACE-TIMESTAMP).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the search in --out from its last checkpoint.")] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed of weights, data order and path sampling.")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu or cuda.")] = "cpu",
    workers: Annotated[Optional[int], typer.Option("--workers", help="Data-loading worker processes per process.")] = None,
    nproc: Annotated[Optional[int], typer.Option("--nproc", help="Run N processes with torch.distributed on this host (NCCL on GPUs, gloo on CPU).")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", hidden=True, help="Cap steps per phase and epoch (development).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
) -> None:
    """Search an architecture: supernet + data + LUT -> arch_params.json and arch.json, every epoch."""
    from densenas.errors import DensenasError
    from densenas.search import SearchOptions, check, run_search
    from densenas.runtime import launch, launched_by_torchrun

    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise DensenasError(f"--device must be cpu or cuda, got {device!r}")
    options = SearchOptions(space=space, lut=lut, data=data, epochs=epochs, arch_update_epoch=arch_update_epoch,
                            batch_size=batch_size, cost=cost, sub_loss_factor=sub_loss_factor,
                            target_latency=target_latency, out=out_dir, resume=resume, seed=seed, device=device,
                            workers=workers, max_steps=max_steps)
    if nproc is not None and not launched_by_torchrun():
        _, run_dir = check(options, world_size=nproc)  # every user mistake shows here, once
        code = launch(nproc, _argv(options, str(run_dir), as_json), device)
        if code:
            raise typer.Exit(code)
        return
    main_rank = int(os.environ.get("RANK", "0")) == 0
    try:
        result = run_search(options)
    except DensenasError:
        if main_rank:
            raise
        raise typer.Exit(2) from None  # rank 0 says it; the others leave quietly
    if not result.is_main:
        return
    if as_json:
        print_json(result.to_json())
        return
    _report(result)


def _argv(o, run_dir: str, as_json: bool) -> list[str]:
    """The command line each torchrun worker gets (the parent's, with --out fixed)."""
    args = ["search", "--out", run_dir, "--device", o.device]
    for flag, value in (("--space", o.space), ("--lut", o.lut), ("--data", o.data), ("--epochs", o.epochs),
                        ("--arch-update-epoch", o.arch_update_epoch), ("--batch-size", o.batch_size),
                        ("--cost", o.cost), ("--sub-loss-factor", o.sub_loss_factor),
                        ("--target-latency", o.target_latency), ("--seed", o.seed), ("--workers", o.workers),
                        ("--max-steps", o.max_steps)):
        if value is not None:
            args += [flag, str(value)]
    if o.resume:
        args.append("--resume")
    if as_json:
        args.append("--json")
    return args


def _report(result) -> None:
    from densenas.archinfo import summarize

    info = summarize(result.arch)
    s = result.summary
    t = Table("#", "block", "in->out", "stride", "fm", "head op", "stack ops", "MACs (M)", "params (K)",
              title=f"derived architecture ({result.arch.space}, Viterbi; mbconv_ omitted)")
    for b in info["blocks"]:
        t.add_row(str(b["index"]), str(b["block_id"]), f"{b['in_ch']}->{b['out_ch']}", str(b["stride"]),
                  str(b["fm"]), _short(b["head_op"]), ", ".join(map(_short, b["stack_ops"])) or "-",
                  f"{b['macs'] / 1e6:.2f}", f"{b['params'] / 1e3:.1f}")
    out.print(t)
    out.print(f"MACs {info['macs'] / 1e6:.2f} M, params {info['params'] / 1e6:.3f} M, {info['layers']} layers")
    if s.get("derived_latency_ms") is not None:
        target = result.settings.target_latency_ms
        aim = f" (target {target:g} ms)" if target else ""
        out.print(f"predicted latency {s['derived_latency_ms']:.4f} ms{aim}; "
                  f"expected (soft) {s['expected_latency_ms']:.4f} ms")
    if s.get("val_top1") is not None:
        out.print(f"supernet val top-1 (last epoch) {s['val_top1']:.1f}%")
    f = result.files
    out.print(f"run directory {f.root}: arch.json, arch_params.json, checkpoint.pt, history.json, run.json, tensorboard/")
    out.print(f"search time {result.wall_s:.1f} s")


def _short(op: str) -> str:
    return op.removeprefix("mbconv_")


def register(app: typer.Typer) -> None:
    app.command("search")(search)
