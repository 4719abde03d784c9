"""Random networks of a space, timed end to end as deployed, and how far predictions of
them are from the measurements: what ``lut validate``, ``lut refine`` and ``lut diagnose``
all stand on.

Networks are drawn by walking from block 0 along uniformly chosen out-edges to the final
conv, with a uniformly chosen head op per block and a uniformly chosen stack op per layer
(``skip_connect`` drops the layer), so depth, width and kernel mix all vary. They are
timed in one chunk of interleaved shuffled rounds while the host is watched for other
work; a fit from such a measurement is kept only when it beats no fit and the host was quiet.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from densenas.arch import Arch
from densenas.errors import DensenasError

if TYPE_CHECKING:
    from densenas.profilers import Profiler
    from densenas.space import SearchSpace


# -- random networks ------------------------------------------------------------------------------


def random_arch(space: SearchSpace, rng: random.Random) -> Arch:
    """One derived architecture of ``space``: a random block path and random ops."""
    from densenas.derive import Choice, choice_to_arch

    route, head, stack = [0], {}, {}
    while not space.blocks[route[-1]].is_final:
        dst = rng.choice(space.blocks[route[-1]].out_edges)
        route.append(dst)
        if not space.blocks[dst].is_final:
            head[dst] = rng.randrange(len(space.head_primitives))
            stack[dst] = tuple(rng.randrange(len(space.stack_primitives)) for _ in range(space.blocks[dst].num_layers))
    return choice_to_arch(space, Choice(tuple(route), head, stack))


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` distinct random architectures (fewer only if the space has fewer)."""
    if n < 1:
        raise DensenasError(f"--samples must be a positive integer, got {n}")
    rng = random.Random(seed)
    seen: set[str] = set()
    archs: list[Arch] = []
    for _ in range(50 * n):
        arch = random_arch(space, rng)
        key = arch.to_dict()["net_config"]
        if key not in seen:
            seen.add(key)
            archs.append(arch)
            if len(archs) == n:
                break
    return archs


# -- scoring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Accuracy:
    """Prediction error statistics, errors as (predicted - measured) / measured."""

    samples: int
    mape: float  # mean |error|, percent
    within_5pct: float  # share of networks with |error| <= 5%
    within_10pct: float
    spearman: float | None  # rank correlation of predicted and measured (None below 3 samples)
    max_abs_error_pct: float
    median_error_pct: float  # signed: > 0 means the LUT overestimates

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "mape": self.mape, "within_5pct": self.within_5pct,
                "within_10pct": self.within_10pct, "spearman": self.spearman,
                "max_abs_error_pct": self.max_abs_error_pct, "median_error_pct": self.median_error_pct}


def error_pct(predicted: Sequence[float], measured: Sequence[float]) -> list[float]:
    return [100.0 * (p - m) / m for p, m in zip(predicted, measured)]


def accuracy(predicted: Sequence[float], measured: Sequence[float]) -> Accuracy:
    import numpy as np
    from scipy.stats import spearmanr

    if len(predicted) != len(measured) or not measured:
        raise ValueError("accuracy needs as many predictions as measurements, at least one")
    errors = np.asarray(error_pct(predicted, measured))
    rho: float | None = None
    if len(measured) >= 3:
        value = float(spearmanr(predicted, measured).statistic)
        rho = None if math.isnan(value) else value
    return Accuracy(
        samples=len(measured),
        mape=float(np.abs(errors).mean()),
        within_5pct=float((np.abs(errors) <= 5.0).mean()),
        within_10pct=float((np.abs(errors) <= 10.0).mean()),
        spearman=rho,
        max_abs_error_pct=float(np.abs(errors).max()),
        median_error_pct=float(np.median(errors)),
    )


# -- timing networks as deployed --------------------------------------------------------------


@dataclass(frozen=True)
class NetworkTimes:
    """End-to-end medians per network. A network timed twice (``halves``) is the mean of
    the two; ``host_busy_cpus`` is how many CPUs other processes kept busy meanwhile."""

    measured_ms: list[float]
    halves: list[tuple[float, float] | None]
    host_busy_cpus: float | None
    busy: bool

    def noise_floor(self) -> "Accuracy | None":
        """How well the host agrees with itself: one timing of each twice-timed network
        scored against the other, with the same statistics as a prediction."""
        pairs = [h for h in self.halves if h is not None]
        if not pairs:
            return None
        return accuracy([a for a, _ in pairs], [b for _, b in pairs])


def time_networks(prof: "Profiler", archs: Sequence["Arch"], batch: int, *, twice: Sequence[bool] | None = None,
                  on_done: Callable[[int, int], None] | None = None) -> NetworkTimes:
    """Time ``archs`` end to end in one chunk of interleaved shuffled rounds (networks
    marked in ``twice`` as two sessions each), watching the host for other work."""
    from densenas.bench import input_shape, network_factory
    from densenas.profilers.hostinfo import HostMonitor, host_is_busy

    twice = list(twice) if twice is not None else [False] * len(archs)
    items: list[tuple[Any, Callable[[], Any], tuple[int, ...]]] = []
    for i, a in enumerate(archs):
        items.append(((0, i), network_factory(a), input_shape(a, batch)))
        if twice[i]:
            items.append(((1, i), network_factory(a), input_shape(a, batch)))
    done = 0

    def progress(_key: Any, _m: Any) -> None:
        nonlocal done
        done += 1
        if on_done is not None:
            on_done(done, len(items))

    saved = prof.protocol
    prof.protocol = dataclasses.replace(saved, chunk_size=max(saved.chunk_size, len(items)))
    try:
        with prof:
            monitor = HostMonitor()
            times = prof.measure_many(items, progress)
            others = monitor.other_cpus()
            threads = prof.threads_in_effect()
    finally:
        prof.protocol = saved
    measured: list[float] = []
    halves: list[tuple[float, float] | None] = []
    for i in range(len(archs)):
        first = times[(0, i)].median_ms
        if twice[i]:
            second = times[(1, i)].median_ms
            halves.append((first, second))
            measured.append(0.5 * (first + second))
        else:
            halves.append(None)
            measured.append(first)
    busy = prof.device_kind == "cpu" and others is not None and host_is_busy(others, threads)
    return NetworkTimes(measured, halves, others, busy)


def refusal_reason(fitted_mape: float, as_is_mape: float, busy_cpus: float | None, allow_busy: bool) -> str | None:
    """Why a fit must not be stored (None when it may): it predicts the held-out networks
    no better than the LUT as it is, or it was measured on a busy host (``busy_cpus``:
    what other processes used, None when the host was quiet) and that was not allowed."""
    if fitted_mape >= as_is_mape:
        return (f"not stored: on the held-out networks the fit scores MAPE {fitted_mape:.2f}%, "
                f"no better than the LUT as it is ({as_is_mape:.2f}%)")
    if busy_cpus is not None and not allow_busy:
        return (f"not stored: other processes kept {busy_cpus:.2f} CPUs busy while the networks were timed; "
                "rerun on an idle host (or pass --allow-busy to store it, flagged)")
    return None
