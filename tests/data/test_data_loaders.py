"""build_loaders / build_eval_loader over digits, image folders and packed LMDBs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from densenas.data.datasets import (
    EpochSampler,
    build_eval_loader,
    build_loaders,
    describe_data,
    epoch_order,
    shift_batch,
)
from densenas.data.digits import digits_split
from densenas.data.tools import list_images, pack_lmdb, write_image_list
from densenas.errors import DensenasError


def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in loader]


def test_digits_shapes_sizes_and_classes() -> None:
    bundle = build_loaders(batch_size=50, image_size=24)
    assert (bundle.num_classes, bundle.image_size, bundle.name) == (10, 24, "digits")
    assert (len(bundle.train.dataset), len(bundle.val.dataset)) == (1437, 360)  # 80/20 of 1797
    x, y = next(iter(bundle.train))
    assert x.shape == (50, 3, 24, 24) and x.dtype == torch.float32 and y.dtype == torch.long
    assert torch.equal(x[:, 0], x[:, 2])  # grey replicated to three channels
    assert abs(float(x.mean())) < 0.2 and 0.7 < float(x.std()) < 1.3  # normalised
    assert len(bundle.train) == 1437 // 50  # a last partial train batch is dropped
    assert sum(len(y) for _, y in bundle.val) == 360  # val keeps every image
    labels = torch.cat([y for _, y in bundle.val])
    assert torch.equal(labels, bundle.val.dataset.tensors[1])  # val in stored order


def test_digits_split_is_stratified_disjoint_and_seeded() -> None:
    from sklearn.datasets import load_digits

    target = load_digits().target
    train, val = digits_split(0)
    assert len(set(train) & set(val)) == 0 and len(train) + len(val) == len(target)
    total, in_val = Counter(target), Counter(target[val])
    for label in range(10):
        assert abs(in_val[label] - 0.2 * total[label]) <= 1
    again, other = digits_split(0)[1], digits_split(1)[1]
    assert np.array_equal(val, again) and not np.array_equal(val, other)


def test_order_is_a_function_of_seed_and_epoch() -> None:
    a, b = build_loaders(batch_size=64, seed=3), build_loaders(batch_size=64, seed=3)
    a.set_epoch(5)
    b.set_epoch(5)
    assert [y.tolist() for _, y in a.train] == [y.tolist() for _, y in b.train]
    assert epoch_order(a.train_sampler, 5) == list(a.train_sampler)
    assert epoch_order(a.train_sampler, 4) != epoch_order(a.train_sampler, 5)
    assert epoch_order(build_loaders(batch_size=64, seed=4).train_sampler, 5) != epoch_order(a.train_sampler, 5)
    assert a.train_sampler.epoch == 5  # epoch_order does not move the sampler


def test_resumed_run_sees_the_same_batches_as_an_uninterrupted_one() -> None:
    straight = build_loaders(batch_size=128, augment=True, seed=1)
    for epoch in range(3):
        straight.set_epoch(epoch)
        last = _batches(straight.train)
    resumed = build_loaders(batch_size=128, augment=True, seed=1)
    resumed.set_epoch(2)
    again = _batches(resumed.train)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(last, again))


def test_augmentation_shifts_images_by_a_pixel_or_two() -> None:
    plain = build_loaders(batch_size=64, seed=0)
    shifted = build_loaders(batch_size=64, seed=0, augment=True)
    (x0, y0), (x1, y1) = next(iter(plain.train)), next(iter(shifted.train))
    assert torch.equal(y0, y1) and x0.shape == x1.shape and not torch.equal(x0, x1)
    assert torch.equal(next(iter(plain.val))[0], next(iter(shifted.val))[0])  # val untouched

    dot = torch.zeros(64, 1, 9, 9)
    dot[:, :, 4, 4] = 1.0
    moved = shift_batch(dot, 2, torch.Generator().manual_seed(0))
    where = moved[:, 0].flatten(1).argmax(1)
    rows, cols = where // 9, where % 9
    assert rows.min() >= 2 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 6
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 5  # shifts differ per image


def test_epoch_sampler_matches_distributed_sampler_and_shards() -> None:
    dataset = list(range(23))
    ours = EpochSampler(23, shuffle=True, seed=9)
    theirs = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=9)
    ours.set_epoch(2)
    theirs.set_epoch(2)
    assert list(ours) == list(theirs)
    padded = [EpochSampler(23, shuffle=True, seed=9, rank=r, world_size=3) for r in range(3)]
    assert {len(s) for s in padded} == {8} and set().union(*map(set, padded)) == set(range(23))
    exact = [EpochSampler(23, shuffle=False, rank=r, world_size=3, pad=False) for r in range(3)]
    assert sorted(i for s in exact for i in s) == list(range(23))  # every image exactly once
    assert [len(s) for s in exact] == [8, 8, 7]


def test_distributed_uses_a_distributed_sampler_with_the_same_order(tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdzv'}", rank=0, world_size=1)
    try:
        bundle = build_loaders(batch_size=64, seed=2, distributed=True)
    finally:
        dist.destroy_process_group()
    assert isinstance(bundle.train_sampler, DistributedSampler)
    single = build_loaders(batch_size=64, seed=2)
    bundle.set_epoch(1)
    single.set_epoch(1)
    assert list(bundle.train_sampler) == list(single.train_sampler)
    with pytest.raises(DensenasError, match="torchrun"):
        build_loaders(batch_size=8, distributed=True)


def test_image_folder_through_build_loaders(clean_tree: Path) -> None:
    bundle = build_loaders(str(clean_tree), batch_size=4, image_size=16, workers=0)
    assert bundle.num_classes == 3 and bundle.classes == ["cat", "dog", "fox"]
    assert (len(bundle.train.dataset), len(bundle.val.dataset)) == (18, 6)
    x, y = next(iter(bundle.train))
    assert x.shape == (4, 3, 16, 16) and y.dtype == torch.long
    assert describe_data(str(clean_tree))["kind"] == "imagefolder"


def test_packed_lmdb_through_build_loaders_and_eval(image_tree: Path, tmp_path: Path) -> None:
    listing = tmp_path / "all.txt"
    write_image_list(listing, list_images(image_tree))
    packed = tmp_path / "packed"
    for split in ("train", "val"):
        pack_lmdb(image_tree, listing, packed, split=split, show_progress=False)
    bundle = build_loaders(str(packed), batch_size=5, image_size=16, workers=1, augment=True)
    assert bundle.num_classes == 3 and (len(bundle.train.dataset), len(bundle.val.dataset)) == (17, 6)
    labels = []
    for x, y in bundle.train:  # read in a worker process: the LMDB opens lazily there
        assert x.shape == (5, 3, 16, 16)
        labels += y.tolist()
    assert len(labels) == 15 and set(labels) <= {0, 1, 2}
    ev = build_eval_loader(str(packed / "val.lmdb"), batch_size=4, image_size=16, workers=0)
    assert ev.num_classes == 3 and sum(len(y) for _, y in ev.val) == 6
    assert sorted(torch.cat([y for _, y in ev.val]).tolist()) == [0, 0, 1, 1, 2, 2]


def test_eval_loader_on_digits_is_the_search_val_split() -> None:
    ev = build_eval_loader(batch_size=100, seed=0)
    bundle = build_loaders(batch_size=100, seed=0)
    assert torch.equal(torch.cat([x for x, _ in ev.val]), torch.cat([x for x, _ in bundle.val]))


def test_bad_data_paths_are_named(tmp_path: Path) -> None:
    with pytest.raises(DensenasError, match=f"--data {tmp_path / 'nope'}: no such file or directory"):
        build_loaders(str(tmp_path / "nope"), batch_size=4)
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DensenasError, match="neither an image folder"):
        build_loaders(str(tmp_path / "stuff"), batch_size=4)
    (tmp_path / "half" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DensenasError, match="train"):
        build_loaders(str(tmp_path / "half"), batch_size=4)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "train.lmdb").write_bytes(b"junk" * 100)
    with pytest.raises(DensenasError, match="train.lmdb: not a readable LMDB"):
        build_loaders(str(tmp_path / "broken"), batch_size=4)
    with pytest.raises(DensenasError, match="--batch-size"):
        build_loaders(batch_size=0)
