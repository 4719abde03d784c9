"""The measurement protocol, shared by every backend: warm-up, calibrated samples, and
shuffled interleaved rounds until each op's median is stable.

The idea follows ``torch.utils.benchmark``'s ``adaptive_autorange`` (take samples until
IQR/median falls under a threshold), extended to many ops at once: each round visits
every unfinished op of a chunk in a fresh seeded random order, so slow machine drift
(thermal, frequency, background load) lands on all ops alike instead of on whichever
op happened to run last.
"""

from __future__ import annotations

import gc
import math
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Generic, TypeVar

from densenas.profilers.errors import ProfilerError
from densenas.profilers.stats import Measurement, rel_iqr

if TYPE_CHECKING:
    import numpy as np

K = TypeVar("K", bound=Hashable)

_MAX_ITERS_PER_SAMPLE = 1_000_000
_MIN_ITER_S = 1e-9  # guards against a zero reading from a coarse timer


@dataclass(frozen=True)
class Protocol:
    """Settings of the measurement protocol; recorded in every LUT's provenance."""

    warmup_s: float = 0.05
    min_sample_s: float = 0.0005
    min_rounds: int = 3
    max_rounds: int = 12
    samples_per_round: int = 3
    rel_iqr_target: float = 0.05
    max_s_per_op: float = 1.5
    chunk_size: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("warmup_s", "min_sample_s", "rel_iqr_target", "max_s_per_op"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ProfilerError(f"protocol.{name} must be a non-negative number, got {value!r}")
        for name in ("min_rounds", "max_rounds", "samples_per_round", "chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ProfilerError(f"protocol.{name} must be a positive integer, got {value!r}")
        if self.min_rounds > self.max_rounds:
            raise ProfilerError(
                f"protocol.min_rounds ({self.min_rounds}) exceeds protocol.max_rounds ({self.max_rounds})"
            )
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ProfilerError(f"protocol.seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, object]) -> Protocol:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ProfilerError(f"unknown protocol field(s): {', '.join(unknown)}")
        return cls(**d)  # type: ignore[arg-type]


class Prepared(ABC):
    """One op or network made ready on a backend (a runner, in Polygraphy's terms):
    weights placed, input allocated, session or engine built.

    ``run(n)`` executes it ``n`` times back to back on the input it was prepared with
    and returns the elapsed seconds, timed the backend's right way (host clock for CPU,
    CUDA events for GPU). ``infer(x)`` runs it once on ``x`` (fp32 numpy of the shape it
    was prepared at, cast to the backend's input type) and returns the output as fp32
    numpy on the host, so what is timed can also be checked. A context manager that
    closes on leaving.
    """

    @abstractmethod
    def run(self, n: int) -> float: ...

    @abstractmethod
    def infer(self, x: np.ndarray) -> np.ndarray: ...

    def close(self) -> None:
        """Release sessions and device memory; called once the op's chunk is measured."""

    def __enter__(self) -> Prepared:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class _OpState:
    prepared: Prepared
    iters: int = 1
    times_s: list[float] = field(default_factory=list)
    spent_s: float = 0.0
    rounds: int = 0
    done: bool = False


def _warm_up(state: _OpState, protocol: Protocol) -> None:
    """Run the op in batches of doubling size until ``warmup_s`` of wall time has passed
    and the last batch lasted at least one sample; size samples from that batch.

    The first call (lazy initialisation, autotuning) never sizes samples: there are
    always at least two batches.
    """
    n = 1
    wall = 0.0
    batches = 0
    while True:
        t0 = time.perf_counter()
        elapsed = state.prepared.run(n)
        wall += time.perf_counter() - t0
        batches += 1
        per_iter = max(elapsed / n, _MIN_ITER_S)
        long_enough = elapsed >= protocol.min_sample_s or n >= _MAX_ITERS_PER_SAMPLE
        if batches >= 2 and wall >= protocol.warmup_s and long_enough:
            break
        n = min(2 * n, _MAX_ITERS_PER_SAMPLE)
    state.iters = max(1, min(_MAX_ITERS_PER_SAMPLE, math.ceil(protocol.min_sample_s / per_iter)))


def _finished(state: _OpState, protocol: Protocol) -> bool:
    if state.spent_s >= protocol.max_s_per_op:
        return True
    return state.rounds >= protocol.min_rounds and rel_iqr(state.times_s) < protocol.rel_iqr_target


class RoundRobin(Generic[K]):
    """Measures a chunk of prepared ops together through the protocol.

    Split out from ``run_protocol`` so a test can watch the visiting order
    (``visits``) without a fake backend.
    """

    def __init__(self, prepared: Mapping[K, Prepared], protocol: Protocol) -> None:
        self.protocol = protocol
        self.states: dict[K, _OpState] = {k: _OpState(p) for k, p in prepared.items()}
        self.visits: list[list[K]] = []  # keys in the order each round visited them
        self._rng = random.Random(protocol.seed)

    def run(self) -> dict[K, Measurement]:
        order = list(self.states)
        self._rng.shuffle(order)
        for key in order:
            _warm_up(self.states[key], self.protocol)
        gc_was_enabled = gc.isenabled()
        gc.collect()
        gc.disable()  # a collection inside a timed sample is noise, not the op's cost
        try:
            for _ in range(self.protocol.max_rounds):
                active = [k for k in self.states if not self.states[k].done]
                if not active:
                    break
                self._rng.shuffle(active)
                self.visits.append(active)
                for key in active:
                    self._sample(self.states[key])
                for key in active:
                    state = self.states[key]
                    state.done = _finished(state, self.protocol)
        finally:
            if gc_was_enabled:
                gc.enable()
        return {k: Measurement.from_times_s(s.times_s, rounds=s.rounds) for k, s in self.states.items()}

    def _sample(self, state: _OpState) -> None:
        for _ in range(self.protocol.samples_per_round):
            t0 = time.perf_counter()
            elapsed = state.prepared.run(state.iters)
            state.spent_s += time.perf_counter() - t0
            state.times_s.append(elapsed / state.iters)
        state.rounds += 1


def run_protocol(prepared: Mapping[K, Prepared], protocol: Protocol) -> dict[K, Measurement]:
    """Warm up every op, then measure all of them in shuffled interleaved rounds."""
    return RoundRobin(prepared, protocol).run()
