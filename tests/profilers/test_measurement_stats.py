"""Measurement statistics on lists whose answers are known by hand."""

import math

import pytest

from densenas.profilers.errors import ProfilerError
from densenas.profilers.stats import Measurement, rel_iqr


def test_statistics_of_one_to_five() -> None:
    m = Measurement.from_times_ms([5.0, 1.0, 4.0, 2.0, 3.0], rounds=2)
    assert m.median_ms == 3.0
    assert m.mean_ms == 3.0
    assert m.iqr_ms == pytest.approx(2.0)  # 4 - 2 with linear interpolation
    assert m.p10_ms == pytest.approx(1.4)
    assert m.p90_ms == pytest.approx(4.6)
    assert m.min_ms == 1.0
    assert (m.samples, m.rounds) == (5, 2)
    assert m.rel_spread == pytest.approx(2.0 / 3.0)


def test_median_ignores_an_outlier_that_drags_the_mean() -> None:
    m = Measurement.from_times_ms([1.0] * 9 + [100.0])
    assert m.median_ms == 1.0
    assert m.mean_ms == pytest.approx(10.9)
    assert m.iqr_ms == 0.0


def test_seconds_are_converted_to_milliseconds() -> None:
    m = Measurement.from_times_s([0.001, 0.002, 0.003])
    assert m.median_ms == pytest.approx(2.0)


def test_dict_round_trip_is_exact() -> None:
    m = Measurement.from_times_ms([0.5, 0.7, 0.6, 0.9], rounds=3)
    d = m.to_dict()
    assert set(d) == {"median_ms", "mean_ms", "iqr_ms", "p10_ms", "p90_ms", "min_ms", "samples", "rounds"}
    assert Measurement.from_dict(d) == m
    assert isinstance(Measurement.from_dict(d).samples, int)


def test_from_dict_names_the_missing_or_bad_field() -> None:
    d = Measurement.from_times_ms([1.0, 2.0]).to_dict()
    del d["p90_ms"]
    with pytest.raises(ProfilerError, match="p90_ms"):
        Measurement.from_dict(d)
    d = Measurement.from_times_ms([1.0, 2.0]).to_dict() | {"median_ms": "fast"}
    with pytest.raises(ProfilerError, match="median_ms"):
        Measurement.from_dict(d)


def test_empty_or_negative_times_are_rejected() -> None:
    with pytest.raises(ProfilerError):
        Measurement.from_times_ms([])
    with pytest.raises(ProfilerError):
        Measurement.from_times_ms([1.0, -1.0])


def test_rel_iqr_needs_two_times() -> None:
    assert math.isinf(rel_iqr([1.0]))
    assert rel_iqr([1.0, 1.0, 1.0]) == 0.0
