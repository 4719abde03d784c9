"""Retraining and evaluating searched networks and torchvision reference models.

Names load lazily so that reading and checking a recipe (``densenas.train.recipe``)
does not import torch: a bad recipe is reported at once.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainRecipe": "recipe",
    "TrainJob": "recipe",
    "build_job": "recipe",
    "default_recipe_name": "recipe",
    "load_recipe": "recipe",
    "parse_recipe": "recipe",
    "lr_at": "recipe",
    "Trainer": "trainer",
    "TrainingDiverged": "trainer",
    "train": "trainer",
    "CHECKPOINT_SCHEMA": "evaluate",
    "WEIGHTS_SCHEMA": "evaluate",
    "EvalResult": "evaluate",
    "NetworkSpec": "evaluate",
    "WeightsFile": "evaluate",
    "build_network": "evaluate",
    "evaluate": "evaluate",
    "evaluate_weights": "evaluate",
    "load_state": "evaluate",
    "load_weights": "evaluate",
    "network_spec": "evaluate",
    "read_torch_file": "evaluate",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'densenas.train' has no attribute {name!r}")
    return getattr(importlib.import_module(f"densenas.train.{module}"), name)
