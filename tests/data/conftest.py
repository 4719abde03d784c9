"""Small real image trees, written with PIL, shared by the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ("cat", "dog", "fox")


def make_image(path: Path, seed: int, fmt: str) -> None:
    """A small picture: a coloured square on a noisy background, different per seed."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 80, size=(18, 22, 3), dtype=np.uint8)
    y, x = rng.integers(0, 8, size=2)
    pixels[y : y + 9, x : x + 9] = rng.integers(120, 255, size=3, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt)


def make_tree(root: Path, *, splits: dict[str, int], truncated: bool = False) -> list[Path]:
    """``root/<split>/<class>/img_i.{png,jpg}``, ``splits[split]`` images per class;
    with ``truncated`` the last train image of the first class is cut short."""
    made = []
    seed = 0
    for split, per_class in splits.items():
        for c in CLASSES:
            for i in range(per_class):
                fmt, ext = ("PNG", "png") if i % 2 else ("JPEG", "jpg")
                path = root / split / c / f"img {i}.{ext}"  # a space: paths are not split on it
                make_image(path, seed, fmt)
                seed += 1
                made.append(path)
    if truncated:
        bad = root / "train" / CLASSES[0] / "img 4.jpg"
        bad.write_bytes(bad.read_bytes()[:60])
    return made


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """A retraining-style tree: train (6 per class, one truncated) and val (2 per class)."""
    root = tmp_path / "images"
    make_tree(root, splits={"train": 6, "val": 2}, truncated=True)
    return root


@pytest.fixture
def clean_tree(tmp_path: Path) -> Path:
    """The same tree with no broken image, for loading through torchvision's ImageFolder."""
    root = tmp_path / "clean"
    make_tree(root, splits={"train": 6, "val": 2})
    return root


@pytest.fixture
def imagenet_tree(tmp_path: Path) -> Path:
    """An ImageNet-style train tree: 5 class folders of 10 images each."""
    root = tmp_path / "imagenet"
    for ci in range(5):
        for i in range(10):
            make_image(root / "train" / f"n0{ci}" / f"n0{ci}_{i}.JPEG", ci * 100 + i, "JPEG")
    return root
