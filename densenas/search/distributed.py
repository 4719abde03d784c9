"""torch.distributed for the search: one process per device, launched by torchrun.

NCCL on GPUs, gloo on CPUs. The weights are DDP-managed; the architecture parameters are
not (DDP would average only what its reducer knows, and they are updated on the
validation split outside its forward), so their gradients are averaged here explicitly
before the Adam step and their values broadcast from rank 0 at start and on resume.
Every rank draws the same path from the same seeded sampler; only rank 0 writes files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist

from densenas.errors import DensenasError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: a single process without a process group
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ


def init(device: str) -> DistContext:
    """A process group when torchrun launched us (env:// rendezvous), else a single process."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DensenasError("--device cuda: no CUDA device is available here (use --device cpu)")
    if not launched_by_torchrun():
        return DistContext(device=torch.device(device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.startswith("cuda"):
        if local_rank >= torch.cuda.device_count():
            raise DensenasError(
                f"local rank {local_rank} has no GPU: this host has {torch.cuda.device_count()}; "
                "launch at most that many processes per node"
            )
        torch.cuda.set_device(local_rank)
        dev, backend = torch.device("cuda", local_rank), "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    return DistContext(rank, world, local_rank, backend, dev)


def shutdown(ctx: DistContext, *, wait_for_all: bool = False) -> None:
    """Leave the process group. With ``wait_for_all`` (a clean finish) every rank first
    waits at a barrier: a rank that tears gloo down while rank 0 is still writing its
    files can abort at interpreter exit. After an error no barrier, since the other ranks
    may never reach it."""
    if not (ctx.enabled and dist.is_initialized()):
        return
    if wait_for_all:
        dist.barrier()
    dist.destroy_process_group()


@contextmanager
def process_group(device: str) -> Iterator[DistContext]:
    """``init`` on entry, ``shutdown`` on exit (waiting for all ranks when nothing failed)."""
    ctx = init(device)
    try:
        yield ctx
    except BaseException:
        shutdown(ctx)
        raise
    shutdown(ctx, wait_for_all=True)


def broadcast_(ctx: DistContext, tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Overwrite the tensors on every rank with rank ``src``'s values."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src=src)


def average_grads_(ctx: DistContext, params: Sequence[torch.Tensor]) -> None:
    """Average the gradients of ``params`` over the ranks in one flat all-reduce
    (a missing gradient counts as zero, so every rank contributes the same layout)."""
    if not ctx.enabled:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def all_sum(ctx: DistContext, values: Sequence[float]) -> list[float]:
    """Element-wise sums of per-rank numbers (float64 on the collective's device)."""
    if not ctx.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_min(ctx: DistContext, value: int) -> int:
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def max_rank_difference(ctx: DistContext, tensors: Sequence[torch.Tensor]) -> float:
    """The largest absolute difference between any rank's copy of ``tensors`` and rank 0's
    (0.0 on a single process): the check that replicated state really is replicated."""
    if not ctx.enabled:
        return 0.0
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors]).to(_comm_device(ctx))
    reference = flat.clone()
    dist.broadcast(reference, src=0)
    diff = (flat - reference).abs().max() if flat.numel() else flat.new_zeros(())
    dist.all_reduce(diff, op=dist.ReduceOp.MAX)
    return float(diff.item())


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's small picklable value (a run directory name) on every rank."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _comm_device(ctx: DistContext) -> torch.device:
    return ctx.device if ctx.backend == "nccl" else torch.device("cpu")


def launch(nproc: int, argv: Sequence[str], device: str = "cpu") -> int:
    """Run ``densenas <argv>`` under torchrun with ``nproc`` processes on this host and
    return its exit code (``densenas search --nproc N`` is this)."""
    if nproc < 1:
        raise DensenasError(f"--nproc must be at least 1, got {nproc}")
    if device.startswith("cuda"):
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if nproc > gpus:
            raise DensenasError(f"--nproc {nproc} --device cuda: this host has {gpus} GPU(s), one process per GPU")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "densenas", *argv]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(cmd, env=env).returncode
