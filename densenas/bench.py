"""End-to-end latency of a derived network on a profiler backend, with the same
protocol a LUT row is measured with, beside the LUT's prediction for it.

The whole network is one "op" to the profiler (``Profiler.measure_many``): warm-up,
adaptive repetition, robust statistics, per-call overhead included once, exactly as a
deployment pays it. Comparing that with ``arch_cost`` is the test of the LUT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from densenas.arch import Arch
from densenas.choices import Precision
from densenas.errors import DensenasError

if TYPE_CHECKING:
    from densenas.profilers import Measurement, Profiler, Protocol
    from torch import nn

    from densenas.cost import ArchCost
    from densenas.lut.store import LatencyTable


def network_factory(arch: Arch) -> Callable[[], "nn.Module"]:
    """A factory the profiler calls (seeded) to build the derived network in eval mode."""

    def build() -> "nn.Module":
        from densenas.nets.derived import DerivedNet

        return DerivedNet(arch).eval()

    return build


def input_shape(arch: Arch, batch: int) -> tuple[int, int, int, int]:
    return (batch, 3, arch.input_size, arch.input_size)


def lut_protocol(lut: "LatencyTable") -> "Protocol":
    """The measurement protocol recorded in a LUT, so a network is timed as its ops were."""
    from densenas.profilers import Protocol
    from densenas.profilers.errors import ProfilerError

    recorded = lut.provenance.protocol
    if recorded is None:
        return Protocol()
    try:
        return Protocol.from_dict(recorded)
    except ProfilerError as exc:
        raise DensenasError(f"LUT {lut.source}: field meta.protocol: {exc}") from None


def op_options(lut: "LatencyTable") -> dict[str, Any]:
    """The backend options the LUT's isolated rows were timed with (from its fingerprint)."""
    from densenas.profilers import get_profiler_class

    return get_profiler_class(lut.backend).options_from_fingerprint(lut.provenance.host or {})


def network_options(lut: "LatencyTable") -> dict[str, Any]:
    """The backend options whole networks are timed with for this LUT: its recorded
    deployment configuration (``meta.deployment``), or, for a LUT from before one was
    recorded, the options its rows were timed with (what its calibration was fitted to)."""
    recorded = lut.deployment
    return op_options(lut) if recorded is None else dict(recorded.network_options)


def make_profiler(backend: str, *, threads: int | None, precision: str, protocol: "Protocol",
                  **backend_options: Any) -> "Profiler":
    """Instantiate a registered backend (with any options of its own) and check it can run
    here (ProfilerUnavailable otherwise, one line with the fix)."""
    from densenas.profilers import get_profiler_class, hostinfo
    from densenas.profilers.errors import ProfilerError, ProfilerUnavailable

    Precision.parse(precision, "--precision")
    cls = get_profiler_class(backend)  # unknown name: ProfilerError listing the known ones
    _check_options(backend, cls, backend_options)
    try:
        cls_ok, reason = cls.available()
        if not cls_ok:
            raise ProfilerUnavailable(reason if reason.startswith(f"{backend}:") else f"{backend}: {reason}")
        prof = cls(threads=threads or hostinfo.usable_cpus(), precision=precision, protocol=protocol, **backend_options)
        prof.check_available()
    except (ProfilerError, DensenasError):
        raise
    except Exception as exc:  # a third-party backend's own bug: name it, don't dump its traceback
        raise ProfilerError(f"{backend}: the backend ({cls.__module__}.{cls.__qualname__}) failed to start: "
                            f"{type(exc).__name__}: {exc}") from exc
    return prof


def _check_options(backend: str, cls: type, options: dict[str, Any]) -> None:
    """Refuse options the backend's constructor does not take, naming them and the ones it does."""
    import inspect

    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    unknown = sorted(set(options) - set(params))
    if unknown:
        own = sorted(n for n in params if n not in ("threads", "precision", "protocol"))
        raise DensenasError(f"{backend} has no option {', '.join(map(repr, unknown))}; "
                            f"its options: {', '.join(own) or 'none'}")


def profiler_for_lut(lut: "LatencyTable", *, protocol: "Protocol | None" = None, deployed: bool = False) -> "Profiler":
    """A profiler configured as the LUT's was: backend, threads, precision, protocol;
    with ``deployed``, in the LUT's deployment configuration (for whole networks).
    ProfilerUnavailable (one line, exit 2) when that backend cannot run here."""
    provenance = lut.provenance
    options = network_options(lut) if deployed else op_options(lut)
    return make_profiler(
        lut.backend,
        threads=provenance.threads,
        precision=lut.precision,
        protocol=protocol or lut_protocol(lut),
        **options,
    )


def measure_archs(prof: "Profiler", archs: Sequence[Arch], batch: int,
                  on_done: Callable[[int, "Measurement"], None] | None = None) -> list["Measurement"]:
    """Time each network end to end, interleaved in shuffled rounds (so drift of a busy
    machine falls on all of them alike), in the order given."""
    items = [(i, network_factory(a), input_shape(a, batch)) for i, a in enumerate(archs)]
    result = prof.measure_many(items, on_done)
    return [result[i] for i in range(len(archs))]


@dataclass
class BenchResult:
    arch_path: str
    backend: str
    device: str
    threads: int
    batch: int
    precision: str
    measurement: "Measurement"
    predicted: "ArchCost | None" = None
    lut: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def error_pct(self) -> float | None:
        """(predicted - measured) / measured, in percent: positive means the LUT overestimates."""
        if self.predicted is None:
            return None
        return 100.0 * (self.predicted.total - self.measurement.median_ms) / self.measurement.median_ms

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "arch": self.arch_path,
            "backend": self.backend,
            "device": self.device,
            "threads": self.threads,
            "batch": self.batch,
            "precision": self.precision,
            **self.measurement.to_dict(),
        }
        if self.predicted is not None:
            d.update(
                lut=self.lut,
                predicted_ms=self.predicted.total,
                predicted_sum_of_ops_ms=self.predicted.sum_of_ops,
                predicted_network_offset_ms=self.predicted.network_offset,
                ratio=self.predicted.total / self.measurement.median_ms,
                error_pct=self.error_pct,
            )
        if self.notes:
            d["notes"] = list(self.notes)
        return d


def bench_arch(
    arch: Arch,
    backend: str,
    *,
    arch_path: str = "arch.json",
    batch: int | None = None,
    threads: int | None = None,
    precision: str | None = None,
    lut: str | None = None,
    protocol: "Protocol | None" = None,
    log: Callable[[str], None] | None = None,
) -> BenchResult:
    """Measure ``arch`` end to end on ``backend``; with ``lut``, also predict it.

    Settings left out are taken from the LUT when one is given (its batch, precision,
    threads and protocol), so the two numbers describe the same thing. Another backend
    or thread count than the LUT's is allowed but noted, since the comparison is then
    off; a batch or precision the LUT was not measured at is refused (no rows for it).
    """
    from densenas.cost import arch_cost
    from densenas.lut.store import load_lut

    if batch is not None and batch < 1:
        raise DensenasError(f"--batch must be a positive integer, got {batch}")
    table = load_lut(lut) if lut is not None else None
    notes: list[str] = []
    if table is not None:
        lut_threads = table.provenance.threads
        for name, given, recorded in (("backend", backend, table.backend), ("threads", threads, lut_threads)):
            if given is not None and recorded is not None and given != recorded:
                notes.append(f"{name} is {given} here but {recorded} in the LUT: the comparison is not like for like")
        batch = batch or table.batch
        precision = precision or table.precision
        if threads is None:
            threads = lut_threads
        protocol = protocol or lut_protocol(table)
    batch = batch or 1
    from densenas.profilers import Protocol, get_profiler_class

    # as deployed: the LUT's recorded configuration, or the backend's own without a LUT
    options = (network_options(table) if table is not None and table.backend == backend
               else get_profiler_class(backend).deployment_options())
    prof = make_profiler(backend, threads=threads, precision=precision or "fp32", protocol=protocol or Protocol(),
                         **options)
    predicted = arch_cost(arch, table, batch=batch, precision=prof.precision) if table is not None else None
    if log is not None:  # only once every input is checked: an error stays one line
        log(f"timing {arch_path} on {prof.name} ...")
    with prof:
        (m,) = measure_archs(prof, [arch], batch)
        fp = prof.fingerprint()
    return BenchResult(
        arch_path=arch_path, backend=prof.name, device=str(fp["device"]), threads=int(fp["threads"]),
        batch=batch, precision=prof.precision, measurement=m, predicted=predicted,
        lut=None if table is None else table.source, notes=tuple(notes),
    )
