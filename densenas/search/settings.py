"""A search's settings: what the user asked for (``SearchOptions``), resolved once against
the space's ``search:`` section, or on ``--resume`` against the run being resumed
(``RunSettings``). An option has one name from the command line to the run's files.

Resolution checks everything that can be checked before a process group, a network or
a data loader exists, so a mistake is one line and no training starts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from densenas.choices import CostType
from densenas.errors import DensenasError
from densenas.space.config import SearchSettings
from densenas.yamlfile import Strict, options_checked, validate

DEFAULT_SPACE = "mbv2-tiny"
DEFAULT_DATA = "digits"
# Preference order for a space's shipped CPU LUT when --lut is left out.
DEFAULT_LUT_BACKENDS = ("onnxruntime-cpu", "torch-cpu", "torch-cpu-cpu")
CHECKPOINT = "checkpoint.pt"
SETTINGS_VERSION = 2


class SearchOptions(Strict):
    """What the command line says; ``None`` means "the space's default" (or, on resume,
    the run's own value). A bad value is refused here, naming its option."""

    space: str | None = None
    lut: str | None = None
    data: str | None = None
    epochs: int | None = Field(None, ge=1)
    arch_update_epoch: int | None = Field(None, ge=0)
    batch_size: int | None = Field(None, ge=1)
    cost: CostType | None = None
    sub_loss_factor: float | None = Field(None, ge=0)
    target_latency: float | None = Field(None, gt=0)  # ms
    out: Path | None = None
    resume: bool = False
    seed: int | None = None
    device: str = "cpu"
    workers: int | None = Field(None, ge=0)
    max_steps: int | None = Field(None, ge=1)  # a developer's knob: cap steps per phase and epoch

    def __init__(self, **options: Any) -> None:
        with options_checked(options):
            super().__init__(**options)

    @field_validator("device")
    @classmethod
    def _device(cls, device: str) -> str:
        if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
            raise ValueError(f"must be cpu or cuda, got {device!r}")
        return device


# Before versioning (version 1), two options had other names and four values of the space's
# search section were repeated at the top level (copies of the same values).
_V1_NAMES = {"cost_type": "cost", "target_latency_ms": "target_latency"}
_V1_COPIES = ("val_start_epoch", "log_base", "sample_policy", "weight_sample_num")


class RunSettings(Strict):
    """Every number a search runs with (recorded in run.json and the checkpoint): the
    options that change results, under their option names, and the space's search section."""

    version: Literal[2] = SETTINGS_VERSION
    space: str
    space_path: str
    lut: str | None
    lut_path: str | None
    data: str
    epochs: int
    arch_update_epoch: int
    batch_size: int  # per process
    cost: CostType
    sub_loss_factor: float
    target_latency: float | None
    seed: int
    max_steps: int | None
    world_size: int = 1
    search: SearchSettings

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str) -> "RunSettings":
        if isinstance(d, dict) and "version" not in d:
            d = {**{_V1_NAMES.get(k, k): v for k, v in d.items() if k not in _V1_COPIES}, "version": SETTINGS_VERSION}
        return validate(cls, d, f"{source} settings")


# The options a resumed search must not change: those the run records.
_RECORDED = [name for name in SearchOptions.model_fields if name in RunSettings.model_fields]


def default_lut(space: str) -> str:
    """The space's shipped CPU LUT: ONNX Runtime's, else PyTorch's, else any shipped one."""
    from densenas.lut.store import list_shipped

    names = sorted({e["name"].split("@")[0] for e in list_shipped() if "error" not in e})
    for backend in DEFAULT_LUT_BACKENDS:
        if f"{space}/{backend}" in names:
            return f"{space}/{backend}"
    mine = [n for n in names if n.startswith(f"{space}/")]
    if mine:
        return mine[0]
    raise DensenasError(
        f"no shipped LUT for space {space}; profile one (`densenas profile --space {space} "
        "--backend onnxruntime`) and pass it with --lut, or search on --cost flops"
    )


def default_run_dir(space: str) -> Path:
    return Path("runs") / f"search-{Path(space).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def resolve(options: SearchOptions, *, world_size: int = 1) -> tuple[RunSettings, Path]:
    """Settings and run directory for ``options``; on ``--resume`` the run's own settings,
    with any explicitly given option that would change the results refused."""
    run_dir = options.out or default_run_dir(options.space or DEFAULT_SPACE)
    ckpt = run_dir / CHECKPOINT
    if options.resume:
        if options.out is None:
            raise DensenasError("--resume needs --out RUN_DIR: the directory of the search to continue")
        if ckpt.exists():
            from densenas.search.checkpoint import load_checkpoint

            stored = RunSettings.from_dict(load_checkpoint(ckpt).get("settings", {}), source=str(ckpt))
            _check_same(options, stored, world_size, ckpt)
            return stored, run_dir
    elif ckpt.exists():
        raise DensenasError(
            f"{run_dir} already holds a search ({CHECKPOINT}); continue it with --resume or choose another --out"
        )
    return fresh(options, world_size=world_size), run_dir


def fresh(options: SearchOptions, *, world_size: int = 1) -> RunSettings:
    """The settings of a new search: each option given, else the space's value."""
    from densenas.lut.store import resolve_lut
    from densenas.space.config import resolve_space_path
    from densenas.space.graph import SearchSpace

    o = options
    space_path = resolve_space_path(o.space or DEFAULT_SPACE)
    space = SearchSpace.load(str(space_path))
    cfg = space.config.search
    cost = o.cost or cfg.cost.type
    lut = o.lut if o.lut is not None or cost != CostType.LATENCY else default_lut(space.name)
    epochs = cfg.epochs if o.epochs is None else o.epochs
    arch_update = cfg.arch_update_epoch if o.arch_update_epoch is None else o.arch_update_epoch
    if o.arch_update_epoch is None and arch_update >= epochs:
        arch_update = warmup_share(cfg, epochs)  # a search shorter than the space's warm-up keeps its share
    if arch_update >= epochs:
        raise DensenasError(
            f"--arch-update-epoch {arch_update} leaves no epoch with architecture updates "
            f"(--epochs is {epochs}); it must be below the number of epochs"
        )
    factor = cfg.cost.sub_loss_factor if o.sub_loss_factor is None else o.sub_loss_factor
    if o.target_latency is not None:
        if cost != CostType.LATENCY:
            raise DensenasError(f"--target-latency steers the latency cost; it cannot be used with --cost {cost}")
        if factor == 0:
            raise DensenasError("--target-latency needs a positive --sub-loss-factor to steer with")
    return RunSettings(
        space=space.name, space_path=str(space_path), lut=lut,
        lut_path=str(resolve_lut(lut)) if lut is not None else None, data=o.data or DEFAULT_DATA, epochs=epochs,
        arch_update_epoch=arch_update, batch_size=cfg.batch_size if o.batch_size is None else o.batch_size,
        cost=cost, sub_loss_factor=factor, target_latency=o.target_latency,
        seed=cfg.seed if o.seed is None else o.seed, max_steps=o.max_steps, world_size=world_size, search=cfg,
    )


def warmup_share(search: Any, epochs: int) -> int:
    """The space's share of weight-only warm-up epochs (``search``: a space's search
    settings) for a search of ``epochs``, leaving at least one for architecture updates."""
    return min(epochs - 1, round(search.arch_update_epoch * epochs / search.epochs))


def _check_same(options: SearchOptions, stored: RunSettings, world_size: int, ckpt: Path) -> None:
    for name in _RECORDED:
        value, have = getattr(options, name), getattr(stored, name)
        if value is None:
            continue
        if name == "space":
            same = value in (stored.space, stored.space_path) or Path(value).resolve() == Path(stored.space_path).resolve()
        elif name == "lut":
            same = value in (stored.lut, stored.lut_path)
        else:
            same = value == have
        if not same:
            raise DensenasError(
                f"--resume: --{name.replace('_', '-')} {value} differs from the run's {have} ({ckpt}); "
                "resume with the run's settings or start a new search with another --out"
            )
    if world_size != stored.world_size:
        raise DensenasError(
            f"--resume: the run used {stored.world_size} process(es), this launch has {world_size}; "
            "the same number is needed for the same results"
        )
