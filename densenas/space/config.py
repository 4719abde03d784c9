"""Search-space YAML: parsed with yaml.safe_load, validated with pydantic.

A bad file never gets further than this module: every problem becomes one
DensenasError naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationInfo, field_validator, model_validator

from densenas.choices import CostType
from densenas.errors import DensenasError
from densenas.fileio import read_text
from densenas.paths import CONFIGS_DIR
from densenas.signature import OpSpec
from densenas.yamlfile import Strict, parse_settings, resolve_named_file


class WeightOptim(Strict):
    init_lr: float = Field(0.2, gt=0)
    min_lr: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(4e-5, ge=0)


class ArchOptim(Strict):
    alpha_lr: float = Field(3e-4, gt=0)
    beta_lr: float = Field(3e-4, gt=0)
    weight_decay: float = Field(1e-3, ge=0)


class CostSettings(Strict):
    type: CostType = CostType.LATENCY
    log_base: float = Field(15.0, gt=1)
    sub_loss_factor: float = Field(0.15, ge=0)
    skip_reg: bool = False


class SearchSettings(Strict):
    epochs: int = Field(150, ge=1)
    arch_update_epoch: int = Field(50, ge=0)
    val_start_epoch: int = Field(0, ge=0)
    sample_policy: Literal["prob", "uniform"] = "prob"
    weight_sample_num: int = Field(1, ge=1)
    seed: int = 2
    batch_size: int = Field(64, ge=1)
    bn_momentum: float = Field(0.1, gt=0, le=1)
    bn_eps: float = Field(1e-3, gt=0)
    weight: WeightOptim = WeightOptim()
    arch: ArchOptim = ArchOptim()
    cost: CostSettings = CostSettings()
    # candidate weights: the paper's one module per candidate, or MBConv candidates as
    # slices of one largest kernel per mixed op (learns in a short search)
    weights: Literal["independent", "shared"] = "independent"
    # what a weight step runs of the routing: the paper's every block and branch (dense,
    # beta-weighted sums), or one sampled route of blocks, as a derived network runs
    routes: Literal["dense", "sampled"] = "dense"

    @model_validator(mode="after")
    def _one_op_on_a_route(self) -> "SearchSettings":
        if self.routes == "sampled" and self.weight_sample_num != 1:
            raise ValueError("routes: sampled runs a derived network's layout, one op per layer: "
                             f"weight_sample_num must be 1, got {self.weight_sample_num}")
        return self


# Far beyond any real network: a typo fails here instead of hanging whatever walks the space.
MAX_BLOCKS = 256
MAX_WIDTH = 1 << 16
MAX_FM = 1 << 14
MAX_LAYERS = 64


class BlockScale(Strict):
    ch: list[int] = Field(min_length=2, max_length=MAX_BLOCKS)
    fm: list[int] = Field(min_length=2, max_length=MAX_BLOCKS)
    stage: list[int] = Field(min_length=3, max_length=MAX_BLOCKS + 1)
    num_layers: list[int] = Field(min_length=2, max_length=MAX_BLOCKS)

    @field_validator("ch", "fm", "num_layers", "stage")
    @classmethod
    def _in_range(cls, v: list[int], info: ValidationInfo) -> list[int]:
        low, high = {"ch": (1, MAX_WIDTH), "fm": (1, MAX_FM), "num_layers": (0, MAX_LAYERS),
                     "stage": (0, MAX_BLOCKS)}[info.field_name]
        for i, x in enumerate(v):
            if not low <= x <= high:
                raise ValueError(f"entry {i} is {x}; must be between {low} and {high}")
        return v

    @model_validator(mode="after")
    def _lengths(self) -> "BlockScale":
        n = len(self.ch)
        if len(self.fm) != n:
            raise ValueError(f"fm has {len(self.fm)} entries but ch has {n}; give one fm size per block")
        if len(self.num_layers) != n:
            raise ValueError(f"num_layers has {len(self.num_layers)} entries but ch has {n}")
        if len(self.stage) != n + 1:
            raise ValueError(
                f"stage has {len(self.stage)} entries; need {n + 1} (one per block, then the final conv's)"
            )
        if any(b < a for a, b in zip(self.stage, self.stage[1:])):
            raise ValueError("stage ids must not decrease")
        return self


class Primitives(Strict):
    head: list[str] = Field(min_length=1)
    stack: list[str] = Field(min_length=1)

    @field_validator("head", "stack")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        for name in v:
            if not OpSpec(name).candidate:  # OpSpec raises DensenasError naming the op
                raise ValueError(f"{name!r} cannot be a candidate op")
        if len(set(v)) != len(v):
            raise ValueError("duplicate op names")
        return v


class SpaceConfig(Strict):
    """A search space as the YAML file states it."""

    name: str = Field(min_length=1)
    description: str = ""
    input_size: int = Field(gt=0, le=2 * MAX_FM)
    num_classes: int = Field(100, ge=2, le=1_000_000)
    stem: Literal["mbv2", "resnet"]
    init_dim: int = Field(gt=0, le=MAX_WIDTH)
    head_dim: int | None = Field(None, gt=0, le=MAX_WIDTH)
    last_dim: int = Field(gt=0, le=MAX_WIDTH)
    final_conv_in_derived: bool = True
    softmax_temp: float = Field(1.0, gt=0)
    primitives: Primitives
    adjoin_connect_nums: list[int] = Field(min_length=1, max_length=MAX_BLOCKS + 1)
    blocks: BlockScale
    search: SearchSettings = SearchSettings()

    @model_validator(mode="after")
    def _consistent(self) -> "SpaceConfig":
        if self.stem == "mbv2" and self.head_dim is None:
            raise ValueError("head_dim is required when stem is mbv2")
        if self.stem == "mbv2" and self.head_dim != self.blocks.ch[0]:
            raise ValueError(f"head_dim {self.head_dim} must equal blocks.ch[0] ({self.blocks.ch[0]}), the stem's output")
        if self.stem == "resnet" and self.init_dim != self.blocks.ch[0]:
            raise ValueError(f"init_dim {self.init_dim} must equal blocks.ch[0] ({self.blocks.ch[0]}), the stem's output")
        if self.input_size != 2 * self.blocks.fm[0]:
            raise ValueError(
                f"blocks.fm[0] is {self.blocks.fm[0]} but the stride-2 stem maps input_size {self.input_size} to {self.input_size // 2}"
            )
        stages = self.blocks.stage[:-1]
        if max(stages) >= len(self.adjoin_connect_nums):
            raise ValueError(
                f"adjoin_connect_nums has {len(self.adjoin_connect_nums)} entries but blocks use stage {max(stages)}"
            )
        return self



def shipped_spaces() -> dict[str, Path]:
    return {p.stem: p for p in sorted(CONFIGS_DIR.glob("*.yaml")) if _is_space_file(p)}


def _is_space_file(path: Path) -> bool:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "blocks" in data and "primitives" in data


def resolve_space_path(name_or_path: str) -> Path:
    """A shipped space name (``mbv2``) or a path to a YAML file."""
    return resolve_named_file(name_or_path, shipped_spaces(), "search space")


def load_space_config(name_or_path: str) -> SpaceConfig:
    path = resolve_space_path(name_or_path)
    return parse_space_config(read_text(path, "search-space file"), source=str(path))


def parse_space_config(text: str, *, source: str = "<space>") -> SpaceConfig:
    try:
        return parse_settings(SpaceConfig, text, source=source, what="search space")
    except DensenasError as exc:
        if str(exc).startswith(source):
            raise
        raise DensenasError(f"{source}: field primitives: {exc}") from None
