"""Retraining settings: a YAML recipe (``configs/train/*.yaml``) validated with pydantic,
and the learning-rate schedule it implies.

The defaults are the paper's retraining recipe (``configs/imagenet_train_cfg.py`` of its
code release): SGD with momentum 0.9, a per-step cosine schedule from ``lr`` down to
``min_lr``, weight decay 4e-5 on every parameter, label smoothing 0.1, BN momentum 0.1
and eps 1e-3, an optional linear warm-up. A bad field is one DensenasError naming the
file (or the command-line option) and the field.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from pydantic import Field, InstanceOf, model_validator

from densenas.arch import Arch, load_arch
from densenas.errors import DensenasError
from densenas.paths import CONFIGS_DIR
from densenas.yamlfile import Strict, load_settings, options_checked, parse_settings

TRAIN_CONFIGS_DIR = CONFIGS_DIR / "train"
DIGITS_RECIPE = "digits"
DEFAULT_RECIPE = "default"


class Warmup(Strict):
    """Linear warm-up from ``init_lr`` to the recipe's ``lr`` over ``epochs`` epochs (0: none)."""

    epochs: int = Field(0, ge=0)
    init_lr: float = Field(1e-4, ge=0)


class TrainRecipe(Strict):
    """Everything that decides what a retraining run computes (so a resume can check it)."""

    epochs: int = Field(240, ge=1)
    batch_size: int = Field(1024, ge=1, description="global: split evenly across DDP ranks")
    lr: float = Field(0.5, gt=0)
    min_lr: float = Field(1e-5, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(4e-5, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    warmup: Warmup = Warmup()
    bn_momentum: float = Field(0.1, gt=0, le=1)
    bn_eps: float = Field(1e-3, gt=0)
    seed: int = Field(0, ge=0)
    augment: bool = Field(True, description="random shifts of up to 2 pixels on the train split")
    image_size: int | None = Field(None, gt=0, description="None: the arch's input size (32 for a --model)")

    @model_validator(mode="after")
    def _schedule(self) -> "TrainRecipe":
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} is above lr {self.lr}")
        return self

    def with_overrides(self, **options: Any) -> "TrainRecipe":
        """The recipe with command-line values put over it (None: keep the recipe's);
        keys are field names, reported back as ``--option-name``."""
        given = {k: v for k, v in options.items() if v is not None}
        if not given:
            return self
        with options_checked(given):
            return TrainRecipe.model_validate({**self.model_dump(), **given})

    def steps(self, steps_per_epoch: int) -> tuple[int, int]:
        """(warm-up steps, total steps) of the run."""
        return self.warmup.epochs * steps_per_epoch, self.epochs * steps_per_epoch


def lr_at(recipe: TrainRecipe, step: int, steps_per_epoch: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based), as the paper's scheduler:
    linear warm-up, then half a cosine from ``lr`` to ``min_lr`` over the remaining steps
    (a run no longer than its warm-up is all warm-up)."""
    warm, total = recipe.steps(steps_per_epoch)
    if step < warm:
        return recipe.warmup.init_lr + (recipe.lr - recipe.warmup.init_lr) * step / warm
    period = max(total - warm, 1)
    t = min(step - warm, period)
    return recipe.min_lr + (recipe.lr - recipe.min_lr) * (1 + math.cos(math.pi * t / period)) / 2


# -- files -------------------------------------------------------------------------------


def shipped_recipes() -> dict[str, Path]:
    return {p.stem: p for p in sorted(TRAIN_CONFIGS_DIR.glob("*.yaml"))}


def default_recipe_name(data: str) -> str:
    """Tuned settings for the built-in digits, the paper's ImageNet settings otherwise."""
    return DIGITS_RECIPE if data in ("digits", "digits-clutter") else DEFAULT_RECIPE


def load_recipe(name_or_path: str) -> TrainRecipe:
    return load_settings(TrainRecipe, name_or_path, shipped_recipes(), "training recipe")


def parse_recipe(text: str, *, source: str = "<recipe>") -> TrainRecipe:
    return parse_settings(TrainRecipe, text, source=source, what="training recipe")


# -- a run's resolved settings ----------------------------------------------------------


class TrainJob(Strict):
    """One ``densenas train`` invocation, resolved: what to train, on what, where."""

    recipe: TrainRecipe
    arch: InstanceOf[Arch] | None = None  # loaded and checked by load_arch
    model: str | None = None
    data: str = "digits"
    run_dir: Path | None = None
    resume: bool = False
    device: str = "cpu"
    workers: int | None = Field(None, ge=0)


def build_job(
    *,
    arch: str | Path | None = None,
    model: str | None = None,
    data: str = "digits",
    config: str | None = None,
    run_dir: Path | None = None,
    resume: bool = False,
    device: str = "cpu",
    workers: int | None = None,
    **overrides: Any,
) -> TrainJob:
    """A TrainJob from command-line values: the recipe (``config``, or the one tuned for
    ``data``) with the given options put over it, and the architecture loaded and checked."""
    if (arch is None) == (model is None):
        raise DensenasError("give exactly one of --arch (a searched network) and --model (a torchvision model)")
    if run_dir is not None and not resume and (Path(run_dir) / "checkpoint.pt").is_file():
        raise DensenasError(f"{run_dir}: already holds a training run; pass --resume to continue it or choose another --out")
    recipe = load_recipe(config or default_recipe_name(data)).with_overrides(**overrides)
    given = {"data": data, "run_dir": run_dir, "resume": resume, "device": device, "workers": workers}
    with options_checked(given):
        return TrainJob(recipe=recipe, arch=load_arch(arch) if arch is not None else None,
                        model=_check_model(model) if model is not None else None, **given)


def _check_model(name: str) -> str:
    from densenas.train.evaluate import check_model_name  # imports torchvision: only for --model

    return check_model_name(name)


def default_run_dir(job: TrainJob) -> Path:
    """``runs/train/<space or model>-<time>`` (chosen once, by the launching process or rank 0)."""
    name = job.model or (job.arch.space if job.arch is not None else "train")
    return Path("runs") / "train" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
