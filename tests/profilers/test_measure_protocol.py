"""The shared protocol: settings validation, warm-up, interleaved shuffled rounds, chunks.

Ops are real torch modules on the real torch-cpu backend; only the order of calls is
recorded, by wrapping the backend's prepared op.
"""

from __future__ import annotations

import pytest
from torch import nn

from densenas.profilers.errors import ProfilerError
from densenas.profilers.protocol import Prepared, Protocol, RoundRobin
from densenas.profilers.torch_cpu import TorchCPUProfiler

FAST = Protocol(warmup_s=0.005, min_sample_s=0.0002, max_rounds=4, max_s_per_op=0.2)


class _Recorded(Prepared):
    def __init__(self, key: str, inner: Prepared, log: list[tuple[str, int]]) -> None:
        self.key, self.inner, self.log = key, inner, log

    def run(self, n: int) -> float:
        self.log.append((self.key, n))
        return self.inner.run(n)

    def infer(self, x: object) -> object:
        return self.inner.infer(x)

    def close(self) -> None:
        self.log.append((self.key, -1))
        self.inner.close()


class RecordingCPUProfiler(TorchCPUProfiler):
    """torch-cpu that logs which op each ``run`` call went to."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.log: list[tuple[str, int]] = []

    def _prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Prepared:
        key = f"{type(module).__name__}{input_shape[1]}"
        return _Recorded(key, super()._prepare(module, input_shape), self.log)


def _conv(c: int) -> nn.Module:
    return nn.Conv2d(c, c, 3, padding=1)


def test_protocol_rejects_bad_settings_naming_the_field() -> None:
    with pytest.raises(ProfilerError, match="max_rounds"):
        Protocol(max_rounds=0)
    with pytest.raises(ProfilerError, match="min_rounds"):
        Protocol(min_rounds=5, max_rounds=4)
    with pytest.raises(ProfilerError, match="warmup_s"):
        Protocol(warmup_s=-1)


def test_protocol_dict_round_trip() -> None:
    p = Protocol(max_rounds=7, seed=3)
    assert Protocol.from_dict(p.to_dict()) == p
    assert p.to_dict()["rel_iqr_target"] == 0.05
    with pytest.raises(ProfilerError, match="bogus"):
        Protocol.from_dict({"bogus": 1})


def test_rounds_interleave_ops_in_shuffled_orders() -> None:
    # target 0 is never met, so every op runs all max_rounds rounds
    protocol = Protocol(warmup_s=0.002, min_sample_s=0.0001, max_rounds=6, rel_iqr_target=0.0, max_s_per_op=5.0)
    profiler = RecordingCPUProfiler(protocol=protocol)
    items = [(c, (lambda c=c: _conv(c)), (1, c, 8, 8)) for c in (2, 3, 4, 5)]
    result = profiler.measure_many(items)

    assert sorted(result) == [2, 3, 4, 5]
    assert all(m.rounds == 6 and m.samples == 6 * protocol.samples_per_round for m in result.values())
    timed = [key for key, n in profiler.log if n > 0]
    per_visit = protocol.samples_per_round
    visits = timed[-6 * 4 * per_visit :]  # the rounds come after every op's warm-up
    rounds = [visits[i : i + 4 * per_visit : per_visit] for i in range(0, len(visits), 4 * per_visit)]
    assert all(sorted(r) == ["Conv2d2", "Conv2d3", "Conv2d4", "Conv2d5"] for r in rounds), rounds
    assert len({tuple(r) for r in rounds}) > 1, "every round visited the ops in the same order"
    # every op is warmed up before the first round, and closed once at the end
    assert set(timed[: len(timed) - len(visits)]) == {"Conv2d2", "Conv2d3", "Conv2d4", "Conv2d5"}
    assert sorted(k for k, n in profiler.log if n == -1) == ["Conv2d2", "Conv2d3", "Conv2d4", "Conv2d5"]


def test_round_robin_visits_are_seeded() -> None:
    profiler = TorchCPUProfiler()
    orders = []
    for _ in range(2):
        prepared = {c: profiler._prepare(_conv(c).eval(), (1, c, 4, 4)) for c in (1, 2, 3)}
        rr = RoundRobin(prepared, Protocol(warmup_s=0.001, min_sample_s=0.0001, max_rounds=3, rel_iqr_target=0.0))
        rr.run()
        orders.append(rr.visits)
    assert orders[0] == orders[1]


def test_measure_many_reports_each_chunk_as_soon_as_it_is_measured() -> None:
    protocol = Protocol(warmup_s=0.002, min_sample_s=0.0001, max_rounds=3, max_s_per_op=0.1, chunk_size=2)
    profiler = RecordingCPUProfiler(protocol=protocol)
    built: list[int] = []
    done: list[int] = []

    def factory(c: int) -> nn.Module:
        built.append(c)
        return _conv(c)

    def on_done(key: int, m: object) -> None:
        done.append(key)
        # the next chunk's modules are built only after this chunk is reported
        assert len(built) == min(5, -(-len(done) // 2) * 2)

    items = ((c, (lambda c=c: factory(c)), (1, c, 4, 4)) for c in (1, 2, 3, 4, 5))
    result = profiler.measure_many(items, on_done=on_done)
    assert sorted(done) == [1, 2, 3, 4, 5] and sorted(result) == [1, 2, 3, 4, 5]
    assert done[:2] == [1, 2] and done[2:4] == [3, 4]


def test_measure_many_rejects_duplicate_keys_and_bad_items() -> None:
    profiler = TorchCPUProfiler(protocol=FAST)
    with pytest.raises(ProfilerError, match="duplicate key 'a'"):
        profiler.measure_many([("a", lambda: _conv(1), (1, 1, 4, 4))] * 2)
    with pytest.raises(ProfilerError, match="input_shape"):
        profiler.measure_many([("a", lambda: _conv(1), (1, 0, 4, 4))])
    with pytest.raises(ProfilerError, match="not a torch.nn.Module"):
        profiler.measure_many([("a", lambda: "conv", (1, 1, 4, 4))])


def test_a_failing_op_is_reported_with_its_key_and_shape() -> None:
    profiler = TorchCPUProfiler(protocol=FAST)
    with pytest.raises(ProfilerError, match=r"'wrong-width'.*\(1, 3, 4, 4\)"):
        profiler.measure_many([("wrong-width", lambda: _conv(8), (1, 3, 4, 4))])


def test_an_op_stops_at_its_time_budget() -> None:
    protocol = Protocol(warmup_s=0.001, min_sample_s=0.001, max_rounds=12, rel_iqr_target=0.0, max_s_per_op=0.0)
    m = TorchCPUProfiler(protocol=protocol).measure(_conv(2), (1, 2, 4, 4))
    # a zero budget is spent by the first round, even before min_rounds
    assert m.rounds == 1 and m.samples == protocol.samples_per_round
