"""Robust latency statistics: medians and percentiles, never one mean of a fixed count."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from densenas.profilers.errors import ProfilerError


@dataclass(frozen=True)
class Measurement:
    """Latency of one op on one backend, in milliseconds per call.

    ``samples`` is the number of timed samples (each the mean of several calls, so a
    sample outlasts the timer's resolution) and ``rounds`` the number of interleaved
    rounds they were drawn over.
    """

    median_ms: float
    mean_ms: float
    iqr_ms: float
    p10_ms: float
    p90_ms: float
    min_ms: float
    samples: int
    rounds: int

    @property
    def rel_spread(self) -> float:
        """IQR over median: the stability criterion of the protocol (0 when median is 0)."""
        return self.iqr_ms / self.median_ms if self.median_ms > 0 else 0.0

    @classmethod
    def from_times_ms(cls, times_ms: Sequence[float], *, rounds: int = 1) -> Measurement:
        """Summarise per-call times (ms). Percentiles interpolate linearly, as numpy's default."""
        if len(times_ms) == 0:
            raise ProfilerError("cannot summarise an empty list of times")
        a = np.asarray(times_ms, dtype=np.float64)
        if not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ProfilerError(f"times must be finite and non-negative, got min {a.min()!r}")
        p10, p25, p50, p75, p90 = np.percentile(a, [10, 25, 50, 75, 90])
        return cls(
            median_ms=float(p50),
            mean_ms=float(a.mean()),
            iqr_ms=float(p75 - p25),
            p10_ms=float(p10),
            p90_ms=float(p90),
            min_ms=float(a.min()),
            samples=int(a.size),
            rounds=int(rounds),
        )

    @classmethod
    def from_times_s(cls, times_s: Sequence[float], *, rounds: int = 1) -> Measurement:
        return cls.from_times_ms([t * 1e3 for t in times_s], rounds=rounds)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Measurement:
        """Read back ``to_dict`` output; a missing or mistyped field is a ProfilerError naming it."""
        kwargs: dict[str, float | int] = {}
        for f in fields(cls):
            if f.name not in d:
                raise ProfilerError(f"measurement is missing field {f.name!r}")
            value = d[f.name]
            try:
                kwargs[f.name] = int(value) if f.type == "int" else float(value)
            except (TypeError, ValueError):
                raise ProfilerError(f"measurement field {f.name!r} is not a number: {value!r}") from None
        return cls(**kwargs)  # type: ignore[arg-type]


def rel_iqr(times: Sequence[float]) -> float:
    """IQR / median of a list of times (any unit); infinite for fewer than two times."""
    if len(times) < 2:
        return float("inf")
    q25, q50, q75 = np.percentile(np.asarray(times, dtype=np.float64), [25, 50, 75])
    return float((q75 - q25) / q50) if q50 > 0 else float("inf")
