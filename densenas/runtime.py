"""What search and training need of the process they run in: the torch.distributed
context, seeding, the RNG states a checkpoint carries, and weight files read as data
and loaded strictly.

One process per device, launched by torchrun; NCCL on GPUs, gloo on CPUs. Only rank 0
writes files and prints results. Checkpoints are read with ``torch.load(weights_only=True)``
alone, so RNG states are stored as tensors, numbers, strings, lists and dicts.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from densenas.errors import DensenasError

# -- the distributed context -----------------------------------------------------------------


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


def is_main_process() -> bool:
    """True outside torchrun and on its rank 0 (before or without a process group)."""
    return os.environ.get("RANK", "0") == "0"


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


LAYOUT_ENV = "DENSENAS_MEMORY_FORMAT"
LAYOUTS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def layout(device: torch.device | str) -> torch.memory_format:
    """The memory format networks train and evaluate in on ``device``: channels_last on
    CPU, where oneDNN's depthwise convolution backward, most of an MBConv network's
    training step, runs 2-3x faster in it (ResNet blocks about even); the default
    elsewhere. ``DENSENAS_MEMORY_FORMAT=contiguous|channels_last`` overrides it, for a CPU
    where the default measures slower (``benchmarks/search_step.py`` times both)."""
    name = os.environ.get(LAYOUT_ENV)
    if name:
        if name not in LAYOUTS:
            raise DensenasError(f"{LAYOUT_ENV}={name!r}: choose one of {', '.join(LAYOUTS)}")
        return LAYOUTS[name]
    return torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format


def to_device(module: nn.Module, device: torch.device | str) -> nn.Module:
    """``module`` on ``device`` in the layout it trains in there."""
    return module.to(device=device, memory_format=layout(device))


def images_to(images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """A batch of images (N, C, H, W) on ``device`` in the layout its networks run in."""
    return images.to(device, non_blocking=True, memory_format=layout(device))


def wrap_ddp(model: nn.Module, ctx: DistContext, *, ignore: Sequence[str] = (), **options: Any) -> nn.Module:
    """``model`` under DistributedDataParallel on this rank's device (the parameters
    named in ``ignore`` left out of its reducer); the model itself on one process."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    if ignore:
        DDP._set_params_and_buffers_to_ignore_for_model(model, list(ignore))
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DDP(model, device_ids=ids, **options)


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
    return its exit code (``--nproc N`` is this)."""
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


# -- seeds and RNG states ----------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (numpy takes 32 bits)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """The global RNG states of torch (and every CUDA device in use), numpy and Python."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Set what ``capture_rng`` captured. Also reads the lists that training checkpoints
    of schema ``densenas.checkpoint/1`` hold (one CUDA state, that of ``device``)."""
    torch.set_rng_state(state["torch"])
    n, p = state["numpy"], state["python"]
    if isinstance(n, dict):
        n = (n["kind"], n["keys"], n["pos"], n["has_gauss"], n["cached_gaussian"])
        p = (p["version"], p["internal"], p["gauss_next"])
    kind, keys, pos, has_gauss, cached = n
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate((p[0], tuple(p[1]), p[2]))
    cuda = state.get("cuda")
    if cuda is None or not torch.cuda.is_available():
        return
    if isinstance(cuda, torch.Tensor):
        if device is not None and device.type == "cuda":
            torch.cuda.set_rng_state(cuda, device)
    elif len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# -- weight files ---------------------------------------------------------------------------------


def read_torch_file(path: str | Path, what: str = "weights file") -> Any:
    """``torch.load(weights_only=True)`` with every failure turned into one line naming the file."""
    p = Path(path)
    if not p.is_file():
        raise DensenasError(f"{p}: {what} not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler's note about pickle protocols
            return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        text = str(exc)
        if "Weights only load failed" in text:
            reason = text.split("WeightsUnpickler error:", 1)[-1].split("Check the documentation")[0]
            reason = " ".join(reason.split()) or "not plain data"
            raise DensenasError(
                f"{p}: refused: the file holds Python objects beyond tensors and plain data ({reason}); "
                "loading it could run code, so it is not loaded"
            ) from None
        raise DensenasError(f"{p}: not a PyTorch checkpoint ({type(exc).__name__}: {' '.join(text.split())[:80]})") from None


def load_state(model: nn.Module, state_dict: dict[str, torch.Tensor], *, source: str, target: str) -> None:
    """Load weights strictly; a mismatch is one line naming the first key that differs."""
    own = model.state_dict()
    for key, tensor in own.items():
        if key not in state_dict:
            raise DensenasError(f"{source}: weights do not fit {target}: first mismatching key {key!r} is missing from the weights")
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise DensenasError(
                f"{source}: weights do not fit {target}: first mismatching key {key!r} has shape "
                f"{tuple(state_dict[key].shape)} in the weights, {tuple(tensor.shape)} in the network"
            )
    extra = [k for k in state_dict if k not in own]
    if extra:
        raise DensenasError(f"{source}: weights do not fit {target}: first mismatching key {extra[0]!r} is not in the network")
    model.load_state_dict(state_dict, strict=True)
