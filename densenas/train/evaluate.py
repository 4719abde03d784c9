"""Networks to retrain or evaluate, their weight files, and top-1/top-5 evaluation.

A network is a searched architecture (``arch.json``) or a torchvision classification
model by name (a hand-designed reference trained under the same recipe). Weight files
are read with ``torch.load(weights_only=True)`` only: a file that would run code when
unpickled is refused, and it never gets the chance.

Reference models at 32x32 (the digits): torchvision builds them for 224x224 and they are
used unchanged, stem stride included, so a ResNet or MobileNetV2 shrinks a 32x32 input to
1x1 before its pooling. They run and learn, but their accuracy there understates what the
architecture does at its own resolution; for a like-for-like comparison on real images,
train both at 224 (``--image-size 224``). A model that cannot run at the size is refused
before training, in one line.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from densenas.arch import Arch, arch_from_dict, load_arch
from densenas.errors import DensenasError
from densenas.fileio import torch_save
from densenas.runtime import images_to, load_state, read_torch_file

WEIGHTS_SCHEMA = "densenas.weights/1"
# /2 holds the RNG states as densenas.runtime.capture_rng returns them; /1 (lists) still resumes
CHECKPOINT_SCHEMA = "densenas.checkpoint/2"
CHECKPOINT_SCHEMAS = ("densenas.checkpoint/1", CHECKPOINT_SCHEMA)
REFERENCE_IMAGE_SIZE = 32  # torchvision models are built for 224 but run unchanged at 32 (see docs)


# -- what to build ---------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkSpec:
    """A searched architecture or a torchvision model name, with its number of classes."""

    arch: Arch | None
    model: str | None
    num_classes: int

    def __post_init__(self) -> None:
        if (self.arch is None) == (self.model is None):
            raise DensenasError("give exactly one of --arch (a searched network) and --model (a torchvision model)")

    @property
    def name(self) -> str:
        return self.model if self.model is not None else f"{self.arch.space} arch"  # type: ignore[union-attr]

    def describe(self) -> dict[str, Any]:
        """The ``arch`` field of a weights file: the arch.json content, or the model's name."""
        if self.arch is not None:
            return self.arch.to_dict()
        return {"model": self.model}

    def default_image_size(self) -> int:
        return self.arch.input_size if self.arch is not None else REFERENCE_IMAGE_SIZE


def network_spec(
    *, arch: Arch | str | Path | None = None, model: str | None = None, num_classes: int | None = None
) -> NetworkSpec:
    """Resolve ``--arch``/``--model``; ``num_classes`` (the data's) replaces the arch's own."""
    if isinstance(arch, (str, Path)):
        arch = load_arch(arch)
    if model is not None:
        model = check_model_name(model)
    if arch is not None and num_classes is not None and num_classes != arch.num_classes:
        arch = dataclasses.replace(arch, num_classes=num_classes)
    classes = num_classes if num_classes is not None else (arch.num_classes if arch is not None else 1000)
    return NetworkSpec(arch=arch, model=model, num_classes=classes)


def spec_from_record(record: Any, num_classes: int, *, source: str) -> NetworkSpec:
    """The network a weights file names in its ``arch`` field."""
    if isinstance(record, dict) and set(record) == {"model"} and isinstance(record["model"], str):
        return network_spec(model=record["model"], num_classes=num_classes)
    return network_spec(arch=arch_from_dict(record, source=f"{source}: field arch"), num_classes=num_classes)


def classification_models() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def check_model_name(name: str) -> str:
    known = classification_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else " (see torchvision.models.list_models())"
        raise DensenasError(f"--model {name}: not a torchvision classification model{hint}")
    return name


def build_network(spec: NetworkSpec, *, bn_momentum: float = 0.1, bn_eps: float = 1e-3) -> nn.Module:
    """The network, freshly initialised (He fan-out for a searched arch, torchvision's own
    init for a reference model, never pretrained weights), with the recipe's BN settings."""
    from densenas.nets.init import set_bn

    if spec.arch is not None:
        from densenas.nets.derived import DerivedNet

        return DerivedNet(spec.arch, bn_momentum=bn_momentum, bn_eps=bn_eps)
    import torchvision

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. googlenet's note about its init
        model = torchvision.models.get_model(spec.model, weights=None, num_classes=spec.num_classes)
    set_bn(model, bn_momentum, bn_eps)
    return model


def check_runs(model: nn.Module, spec: NetworkSpec, image_size: int) -> None:
    """Fail before training, in one line, if the network cannot take this input size."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, 3, image_size, image_size))
    except (RuntimeError, ValueError, AssertionError) as exc:
        raise DensenasError(
            f"{spec.name} cannot run on {image_size}x{image_size} images ({' '.join(str(exc).split())[:160]}); "
            "try a larger --image-size"
        ) from None
    finally:
        model.train(was_training)
    logits = logits_of(out)
    if tuple(logits.shape) != (1, spec.num_classes):
        raise DensenasError(f"{spec.name} outputs shape {tuple(logits.shape)}, expected (1, {spec.num_classes})")


def logits_of(out: Any) -> torch.Tensor:
    """Plain logits from a model whose training forward returns extras (googlenet, inception)."""
    return out.logits if hasattr(out, "logits") else out


# -- weight files ----------------------------------------------------------------------


@dataclass
class WeightsFile:
    """A loaded ``weights.pt``/``best.pt`` (or a training checkpoint's current weights)."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    spec: NetworkSpec
    top1: float | None
    data: dict[str, Any] = field(default_factory=dict)
    eval_batch_size: int | None = None


def weights_record(
    spec: NetworkSpec,
    state_dict: dict[str, torch.Tensor],
    *,
    top1: float | None,
    top5: float | None,
    epoch: int,
    data: dict[str, Any],
    eval_batch_size: int,
) -> dict[str, Any]:
    """The ``densenas.weights/1`` object: tensors and plain data only."""
    return {
        "schema": WEIGHTS_SCHEMA,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "arch": spec.describe(),
        "num_classes": spec.num_classes,
        "top1": top1,
        "top5": top5,
        "epoch": epoch,
        "data": data,
        "eval_batch_size": eval_batch_size,
    }


def save_weights(path: str | Path, record: dict[str, Any]) -> None:
    torch_save(path, record)


def load_weights(path: str | Path) -> WeightsFile:
    """Read a weights file (or a training checkpoint) and check its fields."""
    p = Path(path)
    obj = read_torch_file(p)
    schema = obj.get("schema") if isinstance(obj, dict) else None
    if schema in CHECKPOINT_SCHEMAS:
        last = obj.get("last") if isinstance(obj.get("last"), dict) else {}
        state, top1 = obj.get("model"), last.get("top1")
    elif schema == WEIGHTS_SCHEMA:
        state, top1 = obj.get("state_dict"), obj.get("top1")
    else:
        raise DensenasError(f"{p}: not a densenas weights file (field schema: expected {WEIGHTS_SCHEMA!r}, got {schema!r})")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise DensenasError(f"{p}: field state_dict: expected a mapping of names to tensors")
    num_classes = obj.get("num_classes")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise DensenasError(f"{p}: field num_classes: expected a positive integer, got {num_classes!r}")
    data = obj.get("data") if isinstance(obj.get("data"), dict) else {}
    ebs = obj.get("eval_batch_size")
    return WeightsFile(
        path=p,
        state_dict=state,
        spec=spec_from_record(obj.get("arch"), num_classes, source=str(p)),
        top1=top1 if isinstance(top1, (int, float)) else None,
        data=data,
        eval_batch_size=ebs if isinstance(ebs, int) and ebs > 0 else None,
    )


# -- evaluation ------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalResult:
    top1: float  # percent
    top5: float  # percent (top-k with k = min(5, classes))
    loss: float  # mean cross-entropy, no label smoothing
    images: int
    seconds: float
    images_per_sec: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str,
    *,
    distributed: bool = False,
) -> EvalResult:
    """Top-1, top-5 and loss over every batch; with ``distributed`` the counts of all ranks
    (each holding a disjoint shard) are summed, so the figures cover the whole split."""
    model.eval()
    dev = torch.device(device)
    sums = torch.zeros(4, dtype=torch.float64, device=dev)  # loss, top1, top5, images
    start = time.perf_counter()
    with torch.inference_mode():
        for images, labels in batches:
            images = images_to(images, dev)
            labels = labels.to(dev, non_blocking=True)
            logits = logits_of(model(images))
            sums += accuracy_counts(logits, labels, sum_loss=True)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - start
    if distributed:
        import torch.distributed as dist

        dist.all_reduce(sums)
        elapsed = torch.tensor([seconds], dtype=torch.float64, device=dev)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        seconds = float(elapsed.item())
    loss, top1, top5, n = sums.tolist()
    n_int = int(n)
    if n_int == 0:
        raise DensenasError("the validation split holds no images")
    return EvalResult(
        top1=100.0 * top1 / n_int,
        top5=100.0 * top5 / n_int,
        loss=loss / n_int,
        images=n_int,
        seconds=seconds,
        images_per_sec=n_int / seconds if seconds > 0 else float("inf"),
    )


def accuracy_counts(logits: torch.Tensor, labels: torch.Tensor, *, sum_loss: bool) -> torch.Tensor:
    """(summed CE loss or 0, top-1 hits, top-5 hits, batch size) as float64, on the logits' device."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hits = top.eq(labels[:, None])
    loss = nn.functional.cross_entropy(logits.float(), labels, reduction="sum") if sum_loss else logits.new_zeros(())
    return torch.stack(
        [loss.double(), hits[:, 0].sum().double(), hits.any(dim=1).sum().double(),
         torch.tensor(labels.shape[0], dtype=torch.float64, device=logits.device)]
    )


def evaluate_weights(
    weights: str | Path,
    *,
    arch: str | Path | None = None,
    model: str | None = None,
    data: str = "digits",
    batch_size: int | None = None,
    image_size: int | None = None,
    seed: int | None = None,
    device: str = "cpu",
    workers: int | None = None,
) -> dict[str, Any]:
    """``densenas eval``: the validation split's top-1, top-5, loss and images per second.

    The network comes from ``--arch``/``--model`` when given (checked against the weights)
    or else from the weights file. The digits split seed, image size and batch size default
    to the training run's, so the figure reproduces the one training reported.
    """
    from densenas.data import build_eval_loader

    wf = load_weights(weights)
    if arch is not None or model is not None:
        spec = network_spec(arch=arch, model=model, num_classes=wf.spec.num_classes)
        target = str(arch) if arch is not None else f"--model {model}"
    else:
        spec, target = wf.spec, f"the network it names ({wf.spec.name})"
    dev = resolve_device(device)
    recorded = wf.data if wf.data.get("name") == data_name(data) else {}
    size = image_size or recorded.get("image_size") or spec.default_image_size()
    split_seed = seed if seed is not None else int(recorded.get("seed", 0))
    bs = batch_size or wf.eval_batch_size or 256
    ev = build_eval_loader(data, image_size=size, batch_size=bs, seed=split_seed, workers=workers, device=str(dev))
    if ev.num_classes != spec.num_classes:
        raise DensenasError(f"--data {data} has {ev.num_classes} classes, the weights were trained for {spec.num_classes}")
    net = build_network(spec)
    load_state(net, wf.state_dict, source=str(wf.path), target=target)
    net.to(dev)
    result = evaluate(net, ev.val, dev)
    return {
        "weights": str(wf.path),
        "network": spec.name,
        "data": ev.name,
        "image_size": size,
        "batch_size": bs,
        "device": str(dev),
        **result.to_dict(),
        "trained_top1": wf.top1,
    }


def data_name(data: str) -> str:
    """How a run records its data: a built-in name (``digits``, ``digits-clutter``) or the absolute path."""
    return data if data in ("digits", "digits-clutter") else str(Path(data).expanduser().resolve())


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    """``cpu`` or ``cuda`` (``cuda:N`` too); CUDA without a GPU is a user error."""
    if device == "cpu":
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DensenasError(f"--device {device}: no CUDA device is available on this machine")
        return torch.device(device if ":" in device else f"cuda:{local_rank}")
    raise DensenasError(f"--device {device}: expected cpu or cuda")
