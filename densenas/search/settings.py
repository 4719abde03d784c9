"""A search's settings: what the user asked for, resolved once against the space's
``search:`` section (or, on ``--resume``, against the run being resumed).

Resolution checks everything that can be checked before a process group, a network or
a data loader exists, so a mistake is one line and no training starts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from densenas.errors import DensenasError

DEFAULT_SPACE = "mbv2-tiny"
DEFAULT_DATA = "digits"
# Preference order for a space's shipped CPU LUT when --lut is left out.
DEFAULT_LUT_BACKENDS = ("onnxruntime-cpu", "torch-cpu", "torch-cpu-cpu")
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class SearchOptions:
    """What the command line says; ``None`` means "the space's default" (or, on resume,
    the run's own value)."""

    space: str | None = None
    lut: str | None = None
    data: str | None = None
    epochs: int | None = None
    arch_update_epoch: int | None = None
    batch_size: int | None = None
    cost: str | None = None
    sub_loss_factor: float | None = None
    target_latency: float | None = None
    out: str | None = None
    resume: bool = False
    seed: int | None = None
    device: str = "cpu"
    workers: int | None = None
    max_steps: int | None = None  # a developer's knob: cap steps per phase and epoch


# Options that change results: on --resume, giving one that differs from the run is refused.
_RESULT_OPTIONS = {
    "space": "space", "lut": "lut", "data": "data", "epochs": "epochs",
    "arch_update_epoch": "arch_update_epoch", "batch_size": "batch_size", "cost": "cost_type",
    "sub_loss_factor": "sub_loss_factor", "target_latency": "target_latency_ms", "seed": "seed",
    "max_steps": "max_steps",
}


@dataclass(frozen=True)
class RunSettings:
    """Every number a search runs with (recorded in run.json and the checkpoint)."""

    space: str
    space_path: str
    lut: str | None
    lut_path: str | None
    data: str
    epochs: int
    arch_update_epoch: int
    val_start_epoch: int
    batch_size: int  # per process
    cost_type: str
    sub_loss_factor: float
    log_base: float
    target_latency_ms: float | None
    seed: int
    sample_policy: str
    weight_sample_num: int
    max_steps: int | None
    world_size: int = 1
    search: dict[str, Any] = field(default_factory=dict)  # the space's search section, resolved

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str) -> "RunSettings":
        names = {f.name for f in fields(cls)}
        missing = names - set(d) - {"world_size", "search"}
        if missing:
            raise DensenasError(f"{source}: field settings lacks {', '.join(sorted(missing))}")
        return cls(**{k: v for k, v in d.items() if k in names})


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


def default_run_dir(space: str) -> str:
    return str(Path("runs") / f"search-{Path(space).stem}-{time.strftime('%Y%m%d-%H%M%S')}")


def resolve(options: SearchOptions, *, world_size: int = 1) -> tuple[RunSettings, Path]:
    """Settings and run directory for ``options``; on ``--resume`` the run's own settings,
    with any explicitly given option that would change the results refused."""
    if options.resume:
        if not options.out:
            raise DensenasError("--resume needs --out RUN_DIR: the directory of the search to continue")
        run_dir = Path(options.out)
        ckpt = run_dir / CHECKPOINT
        if ckpt.exists():
            from densenas.search.checkpoint import load_checkpoint

            stored = RunSettings.from_dict(load_checkpoint(ckpt).get("settings", {}), source=str(ckpt))
            _check_same(options, stored, world_size, ckpt)
            return stored, run_dir
    run_dir = Path(options.out) if options.out else Path(default_run_dir(options.space or DEFAULT_SPACE))
    if not options.resume and (run_dir / CHECKPOINT).exists():
        raise DensenasError(
            f"{run_dir} already holds a search ({CHECKPOINT}); continue it with --resume or choose another --out"
        )
    return fresh(options, world_size=world_size), run_dir


def fresh(options: SearchOptions, *, world_size: int = 1) -> RunSettings:
    from densenas.lut.store import resolve_lut
    from densenas.space.config import resolve_space_path
    from densenas.space.graph import SearchSpace

    space_name = options.space or DEFAULT_SPACE
    space_path = resolve_space_path(space_name)
    space = SearchSpace.load(str(space_path))
    cfg = space.config.search
    cost_type = options.cost or cfg.cost.type
    if cost_type not in ("latency", "flops", "params"):
        raise DensenasError(f"--cost must be latency or flops, got {cost_type!r}")
    lut = options.lut
    if lut is None and cost_type == "latency":
        lut = default_lut(space.name)
    lut_path = str(resolve_lut(lut)) if lut is not None else None
    epochs = options.epochs if options.epochs is not None else cfg.epochs
    arch_update = options.arch_update_epoch if options.arch_update_epoch is not None else cfg.arch_update_epoch
    if options.arch_update_epoch is None and arch_update >= epochs:
        arch_update = warmup_share(cfg, epochs)  # a search shorter than the space's warm-up keeps its share
    batch = options.batch_size if options.batch_size is not None else cfg.batch_size
    factor = options.sub_loss_factor if options.sub_loss_factor is not None else cfg.cost.sub_loss_factor
    _positive("--epochs", epochs)
    _positive("--batch-size", batch)
    if arch_update < 0:
        raise DensenasError(f"--arch-update-epoch must be >= 0, got {arch_update}")
    if arch_update >= epochs:
        raise DensenasError(
            f"--arch-update-epoch {arch_update} leaves no epoch with architecture updates "
            f"(--epochs is {epochs}); it must be below the number of epochs"
        )
    if factor < 0:
        raise DensenasError(f"--sub-loss-factor must be >= 0, got {factor}")
    target = options.target_latency
    if target is not None:
        if cost_type != "latency":
            raise DensenasError(f"--target-latency steers the latency cost; it cannot be used with --cost {cost_type}")
        if not target > 0:
            raise DensenasError(f"--target-latency must be a positive number of milliseconds, got {target}")
        if factor == 0:
            raise DensenasError("--target-latency needs a positive --sub-loss-factor to steer with")
    if options.max_steps is not None:
        _positive("--max-steps", options.max_steps)
    if options.workers is not None and options.workers < 0:
        raise DensenasError(f"--workers must be >= 0, got {options.workers}")
    return RunSettings(
        space=space.name,
        space_path=str(space_path),
        lut=lut,
        lut_path=lut_path,
        data=options.data or DEFAULT_DATA,
        epochs=epochs,
        arch_update_epoch=arch_update,
        val_start_epoch=cfg.val_start_epoch,
        batch_size=batch,
        cost_type=cost_type,
        sub_loss_factor=float(factor),
        log_base=cfg.cost.log_base,
        target_latency_ms=None if target is None else float(target),
        seed=options.seed if options.seed is not None else cfg.seed,
        sample_policy=cfg.sample_policy,
        weight_sample_num=cfg.weight_sample_num,
        max_steps=options.max_steps,
        world_size=world_size,
        search=cfg.model_dump(),
    )


def warmup_share(search: Any, epochs: int) -> int:
    """The space's share of weight-only warm-up epochs (``search``: a space's search
    settings) for a search of ``epochs``, leaving at least one for architecture updates."""
    return min(epochs - 1, round(search.arch_update_epoch * epochs / search.epochs))


def _positive(flag: str, value: int) -> None:
    if value < 1:
        raise DensenasError(f"{flag} must be at least 1, got {value}")


def _check_same(options: SearchOptions, stored: RunSettings, world_size: int, ckpt: Path) -> None:
    given = replace(options, out=None, resume=False)
    for opt, attr in _RESULT_OPTIONS.items():
        value = getattr(given, opt)
        if value is None:
            continue
        have = getattr(stored, attr)
        if opt == "space":
            same = value in (stored.space, stored.space_path) or Path(value).resolve() == Path(stored.space_path).resolve()
        elif opt == "lut":
            same = value in (stored.lut, stored.lut_path)
        else:
            same = value == have
        if not same:
            flag = "--" + opt.replace("_", "-")
            raise DensenasError(
                f"--resume: {flag} {value} differs from the run's {have} ({ckpt}); "
                "resume with the run's settings or start a new search with another --out"
            )
    if world_size != stored.world_size:
        raise DensenasError(
            f"--resume: the run used {stored.world_size} process(es), this launch has {world_size}; "
            "the same number is needed for the same results"
        )
