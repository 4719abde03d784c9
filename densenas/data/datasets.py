"""Data loaders for search, retraining and evaluation.

``--data`` names one of four sources, told apart by content:

- ``digits`` (the default): scikit-learn's handwritten digits, real images that ship
  with scikit-learn, upscaled to ``image_size``, held as in-memory tensors;
- ``digits-clutter``: the same digits at random scale, rotation and position on a 32x32
  canvas with fragments of other digits (``densenas.data.clutter``): the val split drawn
  once and held in memory, the training split drawn anew for every batch;
- an image folder: ``PATH/train/<class>/*`` and ``PATH/val/<class>/*``;
- a packed dataset: ``PATH/train.lmdb`` and ``PATH/val.lmdb`` from ``densenas data pack-lmdb``.

Batch order is a pure function of (seed, epoch), so a resumed search sees the same
batches as an uninterrupted one; call ``DataBundle.set_epoch(epoch)`` before each epoch.
Batches are assembled by the dataset (``__getitems__``): one fancy-index into the stored
tensors for digits, and the optional shift augmentation applied to the whole batch.
"""

from __future__ import annotations

import copy
import functools
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler, TensorDataset

from densenas.data.digits import digits_splits
from densenas.errors import DensenasError

DIGITS = "digits"
DIGITS_CLUTTER = "digits-clutter"
BUILT_IN = (DIGITS, DIGITS_CLUTTER)
MAX_SHIFT = 2  # pixels, for the light training augmentation
CROP_RATIO = 0.875  # the usual ImageNet eval protocol: resize to 256, center-crop 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class DataBundle:
    """Train and val loaders of one dataset, with what a model needs to know about it.

    ``batch_size`` is per process when distributed; ``train_sampler``/``val_sampler``
    shard the data per rank, and ``set_epoch`` fixes the order of both for an epoch.
    """

    train: DataLoader
    val: DataLoader
    num_classes: int
    image_size: int
    name: str
    train_sampler: Sampler[int]
    val_sampler: Sampler[int]
    classes: list[str]

    def set_epoch(self, epoch: int) -> None:
        self.train_sampler.set_epoch(epoch)  # type: ignore[attr-defined]
        self.val_sampler.set_epoch(epoch)  # type: ignore[attr-defined]


@dataclass
class EvalData:
    """The val split only (``densenas eval``); the same fields as ``DataBundle``'s val side."""

    val: DataLoader
    val_sampler: Sampler[int]
    num_classes: int
    image_size: int
    name: str
    classes: list[str]


class EpochSampler(Sampler[int]):
    """This rank's indices of a dataset, in an order fixed by (seed, epoch).

    Shuffled, the order is ``torch.randperm(size)`` from a generator seeded with
    ``seed + epoch``, exactly as ``DistributedSampler`` draws it, so one process and a
    one-rank DDP run see the same batches. With ``pad`` the order is padded (repeating
    its start) to a multiple of ``world_size`` so every rank gets as many batches; without
    it each index appears on exactly one rank (an exact evaluation), shards differing by
    at most one.
    """

    def __init__(
        self,
        size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not within world_size {world_size}")
        self.size = size
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad = pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int | None = None) -> list[int]:
        """The indices this rank visits in ``epoch`` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else epoch
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + epoch)
            indices = torch.randperm(self.size, generator=g).tolist()
        else:
            indices = list(range(self.size))
        if self.pad and self.size and self.size % self.world_size:
            extra = self.world_size - self.size % self.world_size
            indices += (indices * (extra // self.size + 1))[:extra]
        return indices[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        if self.pad:
            return -(-self.size // self.world_size)
        return len(range(self.rank, self.size, self.world_size))


def epoch_order(sampler: Sampler[int], epoch: int) -> list[int]:
    """The indices ``sampler`` yields in ``epoch``, without changing its current epoch."""
    probe = copy.copy(sampler)
    probe.set_epoch(epoch)  # type: ignore[attr-defined]
    return list(iter(probe))


# ------------------------------------------------------------------ batch assembly


def shift_batch(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image of a (B, C, H, W) batch by up to ``max_shift`` pixels per axis,
    filling the border by repeating the edge (background, for digits)."""
    b, _, h, w = images.shape
    m = max_shift
    padded = F.pad(images, (m, m, m, m), mode="replicate")
    offsets = torch.randint(0, 2 * m + 1, (2, b), generator=generator)
    rows = offsets[0][:, None] + torch.arange(h)  # (B, H)
    cols = offsets[1][:, None] + torch.arange(w)  # (B, W)
    picked = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return picked.permute(0, 3, 1, 2).contiguous()  # advanced indices came first: (B, H, W, C)


def _batch_generator(seed: int, indices: Sequence[int]) -> torch.Generator:
    """A generator fixed by the batch's indices: the augmentation of a batch depends only
    on (seed, which images), so it is the same after a resume and in any worker."""
    digest = zlib.crc32(np.asarray(indices, dtype=np.int64).tobytes())
    g = torch.Generator()
    g.manual_seed((seed * 0x9E3779B1 + digest) & 0x7FFF_FFFF_FFFF_FFFF)
    return g


def keep_batch(batch: Any) -> Any:
    """The collate function for datasets that already return a whole batch (a ``Batch``)."""
    return batch


class TensorImages(TensorDataset):
    """Images and labels held as tensors; a batch is one fancy-index, no per-item work."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, shift: int = 0, seed: int = 0):
        super().__init__(images, labels)
        self.shift = shift
        self.seed = seed

    def __getitems__(self, indices: list[int]) -> Batch:
        idx = torch.as_tensor(indices, dtype=torch.long)
        images, labels = self.tensors[0][idx], self.tensors[1][idx]
        if self.shift:
            images = shift_batch(images, self.shift, _batch_generator(self.seed, indices))
        return images, labels


class FreshClutter(Dataset):
    """The cluttered digits' training split drawn anew for every batch (``digits-clutter``):
    item ``i`` is digit ``i % N`` of the split at a new scale, rotation, position and
    clutter each time it is drawn, from a generator fixed by the batch's indices, so a
    resumed run sees the same images. An unbounded supply of training images is what lets
    a larger network use its capacity rather than memorise ``RENDERS`` fixed copies."""

    def __init__(self, digits: torch.Tensor, labels: torch.Tensor, *, renders: int, seed: int,
                 mean: torch.Tensor, std: torch.Tensor, image_size: int) -> None:
        self.digits, self.labels = digits, labels
        self.renders, self.seed = renders, seed
        self.mean, self.std, self.image_size = mean, std, image_size

    def __len__(self) -> int:
        return self.digits.shape[0] * self.renders

    def __getitems__(self, indices: list[int]) -> Batch:
        from densenas.data.clutter import clutter_sources, draw

        n = self.digits.shape[0]
        idx = torch.as_tensor(indices, dtype=torch.long) % n
        g = _batch_generator(self.seed, indices)
        x = draw(self.digits[idx], self.digits[clutter_sources(n, idx, g)], g)
        return _grey_to_rgb(_resized(x, self.image_size), self.mean, self.std), self.labels[idx]


class StackedImages(Dataset):
    """Wraps a per-image dataset (image folder, LMDB) to return stacked batches, so the
    shift augmentation is applied per batch exactly as for in-memory data."""

    def __init__(self, base: Any, *, shift: int = 0, seed: int = 0) -> None:
        self.base = base
        self.shift = shift
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.base[index]

    def __getitems__(self, indices: list[int]) -> Batch:
        items = [self.base[i] for i in indices]
        images = torch.stack([x for x, _ in items])
        labels = torch.tensor([y for _, y in items], dtype=torch.long)
        if self.shift:
            images = shift_batch(images, self.shift, _batch_generator(self.seed, indices))
        return images, labels


# ----------------------------------------------------------------------- sources


@dataclass
class _Split:
    dataset: Dataset
    classes: list[str]


@dataclass
class _Source:
    kind: str  # "digits" | "digits-clutter" | "imagefolder" | "lmdb"
    path: Path | None
    name: str


def resolve_data(data: str) -> _Source:
    """Tell the three sources apart; a path that is none of them is a DensenasError."""
    if data in BUILT_IN:
        return _Source(data, None, data)
    path = Path(data).expanduser()
    if not path.exists():
        raise DensenasError(
            f"--data {data}: no such file or directory (expected 'digits', 'digits-clutter', an image folder "
            "with train/ and val/, or a directory with train.lmdb and val.lmdb)"
        )
    if path.is_file() or any((path / f"{s}.lmdb").exists() for s in ("train", "val")):
        return _Source("lmdb", path, str(path))
    if any((path / s).is_dir() for s in ("train", "val")):
        return _Source("imagefolder", path, str(path))
    raise DensenasError(
        f"--data {data}: neither an image folder (train/, val/) "
        "nor a packed dataset (train.lmdb, val.lmdb)"
    )


def _resized(x: torch.Tensor, image_size: int) -> torch.Tensor:
    if x.shape[-1] == image_size:
        return x
    return F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)


def _grey_to_rgb(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalised grey images as 3 channels: a view, no copy."""
    return ((x - mean) / std).expand(-1, 3, -1, -1)


@functools.lru_cache(maxsize=1)
def _digits(image_size: int, seed: int, shift: int, kind: str = DIGITS) -> tuple[_Split, _Split]:
    """The plain digits (upscaled from 8x8) or the cluttered ones (resampled from 32x32)."""
    (train_images, train_labels), (val_images, val_labels) = digits_splits(seed)
    if kind == DIGITS_CLUTTER:
        from densenas.data.clutter import clutter_arrays

        xt, y_train, xv, y_val = clutter_arrays(seed)
    else:
        xt, xv = torch.from_numpy(train_images)[:, None], torch.from_numpy(val_images)[:, None]  # (N, 1, 8, 8) in [0, 1]
        y_train, y_val = torch.from_numpy(train_labels), torch.from_numpy(val_labels)
    xt, xv = _resized(xt, image_size), _resized(xv, image_size)
    mean, std = xt.mean(), xt.std()
    classes = [str(i) for i in range(10)]
    val = _Split(TensorImages(_grey_to_rgb(xv, mean, std), y_val), classes)
    if kind == DIGITS_CLUTTER:  # the task is its drawing procedure: every training batch drawn anew
        from densenas.data.clutter import RENDERS

        fresh = FreshClutter(torch.from_numpy(train_images), torch.from_numpy(train_labels),
                             renders=RENDERS, seed=seed, mean=mean, std=std, image_size=image_size)
        return _Split(fresh, classes), val
    return _Split(TensorImages(_grey_to_rgb(xt, mean, std), y_train, shift=shift, seed=seed), classes), val


def _image_transform(image_size: int) -> Any:
    from torchvision import transforms

    return transforms.Compose(
        [
            transforms.Resize(round(image_size / CROP_RATIO)),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def _file_split(source: _Source, split: str, image_size: int, seed: int, shift: int) -> _Split:
    assert source.path is not None
    transform = _image_transform(image_size)
    if source.kind == "lmdb":
        from densenas.data.lmdb_store import LmdbImageDataset

        path = source.path if source.path.is_file() else source.path / f"{split}.lmdb"
        if not path.exists():
            raise DensenasError(f"{path}: no such LMDB (pack it with `densenas data pack-lmdb --split {split}`)")
        base: Any = LmdbImageDataset(path, transform)
        if len(base) == 0:
            raise DensenasError(f"{path}: LMDB holds no images")
    else:
        from torchvision.datasets import ImageFolder

        folder = source.path / split
        if not folder.is_dir():
            raise DensenasError(f"{folder}: no such image folder")
        try:
            base = ImageFolder(str(folder), transform=transform)
        except (FileNotFoundError, OSError) as exc:
            raise DensenasError(f"{folder}: no images found ({exc})") from None
    return _Split(StackedImages(base, shift=shift, seed=seed), list(base.classes))


def _splits(source: _Source, image_size: int, seed: int, augment: bool) -> tuple[_Split, _Split]:
    shift = MAX_SHIFT if augment else 0
    if source.kind in BUILT_IN:
        return _digits(image_size, seed, shift, source.kind)
    if source.kind == "lmdb" and source.path is not None and source.path.is_file():
        raise DensenasError(
            f"--data {source.path}: one LMDB file holds one split; "
            "give the directory holding train.lmdb and val.lmdb"
        )
    train = _file_split(source, "train", image_size, seed, shift)
    val = _file_split(source, "val", image_size, seed, 0)
    if train.classes != val.classes:
        raise DensenasError(
            f"--data {source.path}: train has {len(train.classes)} classes and val "
            f"{len(val.classes)}, or their names differ; both splits need the same classes"
        )
    return train, val


# ----------------------------------------------------------------------- loaders


def _check(image_size: int, batch_size: int) -> None:
    if image_size < 1:
        raise DensenasError(f"--image-size must be positive, got {image_size}")
    if batch_size < 1:
        raise DensenasError(f"--batch-size must be positive, got {batch_size}")


def _rank_world(distributed: bool) -> tuple[int, int]:
    if not distributed:
        return 0, 1
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise DensenasError("distributed data needs torch.distributed initialised (launch with torchrun)")
    return dist.get_rank(), dist.get_world_size()


def _default_workers(source: _Source, world_size: int) -> int:
    if source.kind in BUILT_IN:
        return 0  # in memory: the main process indexes a batch faster than a worker ships it
    return min(8, max(1, (os.cpu_count() or 1) // world_size))


def _loader(
    dataset: Dataset,
    sampler: Sampler[int],
    *,
    batch_size: int,
    workers: int,
    device: str,
    seed: int,
    drop_last: bool,
) -> DataLoader:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=keep_batch,
        pin_memory=str(device).startswith("cuda"),
        persistent_workers=workers > 0,
        drop_last=drop_last,
        generator=generator,
    )


def build_loaders(
    data: str = DIGITS,
    *,
    image_size: int = 32,
    batch_size: int,
    seed: int = 0,
    workers: int | None = None,
    distributed: bool = False,
    device: str = "cpu",
    augment: bool = False,
) -> DataBundle:
    """Train and val loaders for ``data`` (``digits``, an image folder or a packed dataset).

    Train is shuffled per (seed, epoch) and drops a last partial batch (a batch of one
    breaks batch norm); val keeps its order. Distributed, each rank gets its shard:
    train through ``DistributedSampler``, val through an unpadded ``EpochSampler`` so
    summed val counts cover every image exactly once.
    """
    _check(image_size, batch_size)
    source = resolve_data(data)
    rank, world = _rank_world(distributed)
    train, val = _splits(source, image_size, seed, augment)
    n_train = len(train.dataset)  # type: ignore[arg-type]
    train_sampler: Sampler[int]
    if distributed:
        train_sampler = DistributedSampler(
            train.dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed
        )
    else:
        train_sampler = EpochSampler(n_train, shuffle=True, seed=seed)
    val_sampler = EpochSampler(
        len(val.dataset), shuffle=False, seed=seed, rank=rank, world_size=world, pad=False  # type: ignore[arg-type]
    )
    workers = _default_workers(source, world) if workers is None else workers
    common = dict(batch_size=batch_size, workers=workers, device=device, seed=seed)
    return DataBundle(
        train=_loader(
            train.dataset, train_sampler, drop_last=len(train_sampler) >= batch_size, **common  # type: ignore[arg-type]
        ),
        val=_loader(val.dataset, val_sampler, drop_last=False, **common),  # type: ignore[arg-type]
        num_classes=len(train.classes),
        image_size=image_size,
        name=source.name,
        train_sampler=train_sampler,
        val_sampler=val_sampler,
        classes=train.classes,
    )


def build_eval_loader(
    data: str = DIGITS,
    *,
    image_size: int = 32,
    batch_size: int,
    seed: int = 0,
    workers: int | None = None,
    distributed: bool = False,
    device: str = "cpu",
) -> EvalData:
    """The val split alone, in order; ``data`` may also be a single packed ``.lmdb`` file.

    For digits the val split is the seed's 20%, the same one search validated on.
    """
    _check(image_size, batch_size)
    source = resolve_data(data)
    rank, world = _rank_world(distributed)
    if source.kind in BUILT_IN:
        val = _digits(image_size, seed, 0, source.kind)[1]
    else:
        val = _file_split(source, "val", image_size, seed, 0)
    sampler = EpochSampler(len(val.dataset), shuffle=False, rank=rank, world_size=world, pad=False)  # type: ignore[arg-type]
    workers = _default_workers(source, world) if workers is None else workers
    loader = _loader(
        val.dataset, sampler, batch_size=batch_size, workers=workers, device=device, seed=seed, drop_last=False
    )
    return EvalData(
        val=loader,
        val_sampler=sampler,
        num_classes=len(val.classes),
        image_size=image_size,
        name=source.name,
        classes=val.classes,
    )


def describe_data(data: str = DIGITS, *, image_size: int = 32, seed: int = 0) -> dict[str, Any]:
    """What ``data`` resolves to: its kind, classes and the size of each split."""
    source = resolve_data(data)
    train, val = _splits(source, image_size, seed, augment=False)
    return {
        "name": source.name,
        "kind": source.kind,
        "num_classes": len(train.classes),
        "classes": train.classes,
        "train": len(train.dataset),  # type: ignore[arg-type]
        "val": len(val.dataset),  # type: ignore[arg-type]
        "image_size": image_size,
    }
