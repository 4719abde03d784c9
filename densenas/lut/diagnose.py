"""Which ops the isolated timing gets wrong: ``densenas lut diagnose``.

Random networks of a space run whole on the LUT's backend, as deployed, under the
backend's own per-node or per-layer profiler (``Profiler.layer_times``: ONNX Runtime's
session profiler, TensorRT's ``IProfiler``, forward hooks on eager PyTorch). Each
layer's time inside the network is set beside its LUT row's isolated cost (and
in-context cost, when the LUT is refined), and rows are ranked by how much of a typical network's error they carry;
what no layer owns (layout reorders between layers, the graph's own copies) is
reported apart. A profiler adds its own cost to every node it times (several
microseconds, as much as a small kernel), so each network is also timed unprofiled, as
deployed, and its layers' profiled times are scaled to share that time in the proportions
the profiler saw: the in-network figures add up to what the network really takes. They are
a diagnostic of where the isolated sum goes wrong, not a measurement to store.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from densenas.errors import DensenasError

if TYPE_CHECKING:
    from densenas.arch import Arch
    from densenas.lut.store import LatencyTable


@dataclass(frozen=True)
class RowDiagnosis:
    """One LUT row inside the sampled networks: its isolated and in-context costs, the
    median of its layers' times in the network (profiled, and scaled to the network's
    unprofiled time), and what it adds to a network's error on average."""

    key: str
    op: str
    occurrences: int
    isolated_ms: float
    context_ms: float | None
    in_network_ms: float
    profiled_ms: float
    error_per_network_ms: float  # (isolated - in network) x occurrences / networks

    @property
    def ratio(self) -> float | None:
        return None if self.isolated_ms <= 0 else self.in_network_ms / self.isolated_ms

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "op": self.op, "occurrences": self.occurrences, "isolated_ms": self.isolated_ms,
                "context_ms": self.context_ms, "in_network_ms": self.in_network_ms,
                "profiled_ms": self.profiled_ms, "ratio": self.ratio,
                "error_per_network_ms": self.error_per_network_ms}


@dataclass
class Diagnosis:
    lut: str
    space: str
    backend: str
    device: str
    threads: int
    networks: int
    runs: int
    source: str
    rows: list[RowDiagnosis]  # largest |error per network| first
    measured_ms: float  # medians over the networks: unprofiled, as deployed, per-call overhead included
    predicted_ms: float  # the LUT's prediction as it stands (in-context costs when refined)
    isolated_sum_ms: float  # the rows' isolated costs, summed
    profiled_ms: float  # what the profiler's node times add up to
    other_ms: float  # the part of the network no layer owns, scaled like the layers
    other_parts: dict[str, float]  # mean per network, by node type
    by_op: dict[str, dict[str, float]]  # per op kind: isolated and in-network time per network
    host_busy_cpus: float | None
    busy: bool

    def to_dict(self) -> dict[str, Any]:
        return {"lut": self.lut, "space": self.space, "backend": self.backend, "device": self.device,
                "threads": self.threads, "networks": self.networks, "runs": self.runs, "source": self.source,
                "measured_ms": self.measured_ms, "predicted_ms": self.predicted_ms,
                "isolated_sum_ms": self.isolated_sum_ms, "profiled_ms": self.profiled_ms, "other_ms": self.other_ms,
                "other_parts": self.other_parts, "by_op": self.by_op, "host_busy_cpus": self.host_busy_cpus,
                "busy": self.busy, "rows": [r.to_dict() for r in self.rows]}


def layer_paths(arch: "Arch") -> list[str]:
    """Module paths of the derived network's layers, in ``Arch.layers()`` order."""
    from densenas.nets.derived import DerivedNet

    net = DerivedNet(arch)
    names = {id(m): name for name, m in net.named_modules()}
    return [names[id(m)] for m in net.layer_modules()]


def diagnose_lut(
    lut: "str | Path | LatencyTable",
    space_name: str,
    *,
    networks: int = 8,
    runs: int = 50,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
) -> Diagnosis:
    """Profile ``networks`` random networks of ``space_name`` layer by layer on the LUT's
    backend (deployment options) and compare every layer with its LUT row."""
    from densenas.bench import input_shape, measure_archs, network_factory, profiler_for_lut
    from densenas.cost import arch_cost
    from densenas.cost.latency import LatencyModel
    from densenas.lut.refine import row_keys
    from densenas.lut.networks import sample_archs
    from densenas.lut.store import load_lut
    from densenas.profilers.hostinfo import HostMonitor, host_is_busy
    from densenas.space import SearchSpace

    if networks < 1:
        raise DensenasError(f"--networks must be a positive integer, got {networks}")
    if runs < 1:
        raise DensenasError(f"--runs must be a positive integer, got {runs}")
    table = load_lut(lut) if isinstance(lut, (str, Path)) else lut
    space = SearchSpace.load(space_name)
    table.require(space, batch=table.batch, precision=table.precision, input_size=space.input_size)
    model = LatencyModel(table)
    archs = sample_archs(space, networks, seed)
    paths_of = [layer_paths(a) for a in archs]
    prof = profiler_for_lut(table, deployed=True)

    with prof:
        monitor = HostMonitor()
        profiled = []
        for i, (arch, paths) in enumerate(zip(archs, paths_of)):
            profiled.append(prof.layer_times(network_factory(arch), input_shape(arch, table.batch), paths, runs=runs))
            if on_progress is not None:
                on_progress(i + 1, len(archs))
        measured = [m.median_ms for m in measure_archs(prof, archs, table.batch)]
        other_cpus = monitor.other_cpus()
        threads = prof.threads_in_effect()

    inside: dict[str, list[float]] = defaultdict(list)
    raw: dict[str, list[float]] = defaultdict(list)
    ops: dict[str, str] = {}
    isolated_sums, others = [], []
    other_parts: dict[str, float] = defaultdict(float)
    by_op: dict[str, dict[str, float]] = defaultdict(lambda: {"isolated_ms": 0.0, "in_network_ms": 0.0})
    for arch, paths, times, total in zip(archs, paths_of, profiled, measured):
        # the profiler's proportions, spread over the time the network takes unprofiled
        scale = max(total - table.overhead_ms, 0.0) / times.total_ms if times.total_ms > 0 else 0.0
        isolated = 0.0
        for path, key, (_role, _block, sig) in zip(paths, row_keys(arch, table.batch, table.precision), arch.layers()):
            row_iso = model.isolated_cost_ms(table.rows[key])
            ms = times.per_layer_ms[path] * scale
            inside[key].append(ms)
            raw[key].append(times.per_layer_ms[path])
            ops[key] = sig.op
            isolated += row_iso
            by_op[sig.op]["isolated_ms"] += row_iso / len(archs)
            by_op[sig.op]["in_network_ms"] += ms / len(archs)
        isolated_sums.append(isolated)
        others.append(times.other_ms * scale)
        for part, ms in times.other_parts.items():
            other_parts[part] += ms * scale / len(archs)
    rows = []
    for key, samples in inside.items():
        row = table.rows[key]
        iso = model.isolated_cost_ms(row)
        mid = statistics.median(samples)
        rows.append(RowDiagnosis(key, ops[key], len(samples), iso, row.context_ms, mid, statistics.median(raw[key]),
                                 (iso - mid) * len(samples) / len(archs)))
    rows.sort(key=lambda r: -abs(r.error_per_network_ms))
    busy = prof.device_kind == "cpu" and other_cpus is not None and host_is_busy(other_cpus, threads)
    return Diagnosis(
        lut=table.source, space=space.name, backend=prof.name, device=table.device, threads=threads,
        networks=len(archs), runs=runs, source=profiled[0].source, rows=rows,
        measured_ms=statistics.median(measured), predicted_ms=statistics.median(arch_cost(a, table).total for a in archs),
        isolated_sum_ms=statistics.median(isolated_sums), profiled_ms=statistics.median(t.total_ms for t in profiled),
        other_ms=statistics.median(others), other_parts=dict(sorted(other_parts.items(), key=lambda kv: -kv[1])),
        by_op={op: dict(v) for op, v in sorted(by_op.items())}, host_busy_cpus=other_cpus, busy=busy,
    )


def print_diagnosis(d: Diagnosis, emit: Callable[[str], None], top: int = 10) -> None:
    emit(f"{d.lut} on {d.backend} ({d.device}, {d.threads} threads): {d.networks} random {d.space} networks, "
         f"{d.runs} profiled runs each; {d.source}")
    emit(f"  per network (medians): measured {d.measured_ms:.4f} ms as deployed, the LUT predicts {d.predicted_ms:.4f} ms, "
         f"its rows alone sum to {d.isolated_sum_ms:.4f} ms; under the profiler the nodes take {d.profiled_ms:.4f} ms")
    if d.other_parts:
        parts = ", ".join(f"{k} {v:.4f} ms" for k, v in list(d.other_parts.items())[:5])
        emit(f"  outside any layer, per network: {d.other_ms:.4f} ms ({parts})")
    emit("  by op kind, per network, alone -> in the network: " + "; ".join(
        f"{op} {v['isolated_ms']:.4f} -> {v['in_network_ms']:.4f}" for op, v in d.by_op.items()))
    emit(f"  rows that carry most of a network's error (of {len(d.rows)}; in the network = profiled share of the "
         "measured time):")
    for r in d.rows[:top]:
        ratio = "n/a" if r.ratio is None else f"x{r.ratio:.2f}"
        context = "" if r.context_ms is None else f", in-context fit {r.context_ms:.4f} ms"
        emit(f"    {r.key}: alone {r.isolated_ms:.4f} ms, in the network {r.in_network_ms:.4f} ms ({ratio}){context}; "
             f"{r.occurrences} layers, {r.error_per_network_ms:+.4f} ms per network")
    if d.busy:
        emit(f"  warning: other processes kept {d.host_busy_cpus:.2f} CPUs busy during the profiling")
