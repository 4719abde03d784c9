"""The built-in handwritten digits (scikit-learn's 8x8 set, shipped with it: nothing to
download) and their fixed train/val split, which the plain and the cluttered digits share."""

from __future__ import annotations

import numpy as np

VAL_FRACTION = 0.2  # the paper's 80/20 search split


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 images in [0, 1] (N, 8, 8) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def digits_split(seed: int, val_fraction: float = VAL_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Train and val indices of the digits: a stratified split, fixed for a seed."""
    from sklearn.model_selection import train_test_split

    _, labels = digits_arrays()
    train_idx, val_idx = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, stratify=labels, random_state=seed
    )
    return np.sort(train_idx), np.sort(val_idx)


def digits_splits(seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(images, labels) of the train split and of the val split for ``seed``."""
    images, labels = digits_arrays()
    train_idx, val_idx = digits_split(seed)
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])
