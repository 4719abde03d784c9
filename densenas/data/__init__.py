"""Data for search, retraining and evaluation, and the paper's data tools.

Names load lazily so that ``densenas.data.tools`` (the CLI's list and pack commands)
runs without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DataBundle": "datasets",
    "EvalData": "datasets",
    "EpochSampler": "datasets",
    "build_loaders": "datasets",
    "build_eval_loader": "datasets",
    "describe_data": "datasets",
    "epoch_order": "datasets",
    "digits_split": "datasets",
    "LmdbImageDataset": "lmdb_store",
    "ImageRecord": "lmdb_store",
    "read_meta": "lmdb_store",
    "ImageEntry": "tools",
    "ImageList": "tools",
    "PackResult": "tools",
    "split_imagenet": "tools",
    "list_images": "tools",
    "pack_lmdb": "tools",
    "read_image_list": "tools",
    "write_image_list": "tools",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'densenas.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"densenas.data.{module}"), name)
