"""How true is a LUT? Predict random architectures of a space from it, measure each end
to end on the LUT's own backend and settings, and score the predictions.

Architectures are drawn and timed as ``densenas.lut.networks`` does for every LUT check.

Calibration fits what the sum of ops misses (``densenas.lut.meta.Calibration``: a scale,
a per-layer term and an offset beside the per-call overhead counted once), by a
Huber-robust least-squares fit of the relative residuals, the quantity the accuracy
target is stated in; the scale only from 16 networks up, the offset alone below. Its
"after" figures are 2-fold cross-validated: each half of the sample is predicted by the
fit on the other half, so no network scores its own fit.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from densenas.arch import Arch
from densenas.errors import DensenasError
from densenas.lut.meta import Calibration
from densenas.lut.networks import Accuracy, accuracy, sample_archs

if TYPE_CHECKING:
    import numpy as np

MIN_CALIBRATION_SAMPLES = 4
MIN_SCALE_FIT_SAMPLES = 16  # below this (8 per CV fold) only the offset is fitted: slopes from a
# handful of noisy points extrapolate wildly
SCALE_BOUNDS = (0.5, 2.0)  # a network is not 2x faster or slower than its ops for want of a term
PER_LAYER_GAIN = 0.9  # the per-layer term is kept when it cuts the leave-one-out error by 10%
HUBER_SCALE = 0.02  # relative residuals beyond 2% count linearly, not quadratically


# -- calibration ---------------------------------------------------------------------------


def fit_calibration(sum_of_ops: Sequence[float], measured: Sequence[float], overhead_ms: float, *,
                    layers: Sequence[int] | None = None, fit_scale: bool = True) -> Calibration:
    """Huber-robust fit on relative residuals; one odd network (a scheduler hiccup on a
    busy machine) cannot drag the fit far. With ``fit_scale`` the scale is fitted beside
    the offset, and, given the networks' ``layers``, a per-layer term too when it predicts
    these networks clearly better (leave-one-out over them) than the fit without it: a layer count
    and a sum of ops move together across random networks, and a term the data cannot
    tell apart from the scale would only fit noise. Without ``fit_scale``, the offset only."""
    import numpy as np

    s = np.asarray(sum_of_ops, dtype=np.float64)
    m = np.asarray(measured, dtype=np.float64)
    n = np.asarray(layers if layers is not None else [0] * len(s), dtype=np.float64)
    need = 2 if fit_scale else 1
    if len(m) < need:
        raise DensenasError(f"calibration needs at least {need} measured networks, got {len(m)}")
    if not fit_scale or layers is None or len(m) < 4:
        return _fit(s, m, n, overhead_ms, fit_scale=fit_scale, per_layer=False)
    errors = {False: 0.0, True: 0.0}
    for i in range(len(m)):
        rest = np.arange(len(m)) != i
        for per_layer in errors:
            cal = _fit(s[rest], m[rest], n[rest], overhead_ms, fit_scale=True, per_layer=per_layer)
            errors[per_layer] += abs(cal.network_ms(s[i], int(n[i]), overhead_ms) - m[i]) / m[i]
    # the extra term has to earn its place: a clear gain, not a tie broken by rounding
    return _fit(s, m, n, overhead_ms, fit_scale=True, per_layer=errors[True] < PER_LAYER_GAIN * errors[False])


def _fit(s: "np.ndarray", m: "np.ndarray", n_layers: "np.ndarray", overhead_ms: float, *,
         fit_scale: bool, per_layer: bool) -> Calibration:
    import numpy as np
    from scipy.optimize import least_squares

    def unpack(params: np.ndarray) -> tuple[float, float, float]:
        scale = params[0] if fit_scale else 1.0
        slope = params[1] if per_layer else 0.0
        return scale, slope, params[-1]

    def residuals(params: np.ndarray) -> np.ndarray:
        scale, slope, offset = unpack(params)
        trial = Calibration.model_construct(scale=scale, per_layer_ms=slope, network_offset_ms=offset)
        return (trial.network_ms(s, n_layers, overhead_ms) - m) / m

    lower = ([SCALE_BOUNDS[0]] if fit_scale else []) + ([-np.inf] if per_layer else []) + [-np.inf]
    upper = ([SCALE_BOUNDS[1]] if fit_scale else []) + ([np.inf] if per_layer else []) + [np.inf]
    x0 = np.array(([1.0] if fit_scale else []) + ([0.0] if per_layer else []) + [0.0])
    fit = least_squares(residuals, x0, bounds=(lower, upper), loss="huber", f_scale=HUBER_SCALE)
    scale, slope, offset = unpack(fit.x)
    return Calibration(network_offset_ms=float(offset), scale=float(scale), fitted_on=len(m), per_layer_ms=float(slope))


def cross_validated(sum_of_ops: Sequence[float], measured: Sequence[float], overhead_ms: float,
                    seed: int, *, layers: Sequence[int] | None = None, fit_scale: bool = True) -> list[float]:
    """2-fold cross-validated predictions: each half predicted by the fit on the other."""
    n = len(measured)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    folds = [order[: n // 2], order[n // 2:]]
    n_layers = list(layers) if layers is not None else [0] * n
    out = [0.0] * n
    for test, train in ((folds[0], folds[1]), (folds[1], folds[0])):
        cal = fit_calibration([sum_of_ops[i] for i in train], [measured[i] for i in train], overhead_ms,
                              layers=None if layers is None else [n_layers[i] for i in train], fit_scale=fit_scale)
        for i in test:
            out[i] = cal.network_ms(sum_of_ops[i], n_layers[i], overhead_ms)
    return out


def interleaved_check(prof: Any, archs: Sequence[Arch], batch: int, precision: str) -> tuple[list[float], list[float]]:
    """Measure the networks and every op they contain together, all in one chunk of
    shuffled interleaved rounds, and predict each network from those op times.

    Ops and networks then see the same machine state, so what remains is the error of
    the sum-of-ops model itself (fusion, caches, per-op costs the network does not pay),
    not drift between the day the LUT was measured and today. Returns (measured,
    predicted) per network, in order.
    """
    from densenas.bench import input_shape, network_factory
    from densenas.cost import arch_cost
    from densenas.ops import input_shape_for_signature
    from densenas.lut.store import LatencyTable, LutRow
    from densenas.ops import module_for_signature

    layer_sigs = [[sig.with_run(batch, precision) for _, _, sig in a.layers()] for a in archs]
    unique = {s.key(): s for sigs in layer_sigs for s in sigs}
    items: list[tuple[Any, Callable[[], Any], tuple[int, ...]]] = [
        (("op", k), (lambda s=s: module_for_signature(s)), input_shape_for_signature(s)) for k, s in unique.items()
    ]
    items += [(("net", i), network_factory(a), input_shape(a, batch)) for i, a in enumerate(archs)]
    saved = prof.protocol
    prof.protocol = dataclasses.replace(saved, chunk_size=max(saved.chunk_size, len(items)))
    try:
        times = prof.measure_many(items)
        overhead = prof.overhead().median_ms
    finally:
        prof.protocol = saved
    measured = [times[("net", i)].median_ms for i in range(len(archs))]
    # the fresh op times as a LUT of their own (no calibration), predicted the one way
    fresh = LatencyTable({"batch": batch, "precision": precision, "overhead_ms": overhead},
                         (LutRow.from_measurement(s, times[("op", k)]) for k, s in unique.items()),
                         source="ops re-measured alongside")
    return measured, [arch_cost(a, fresh).total for a in archs]


# -- the run -------------------------------------------------------------------------------


@dataclass
class ValidationResult:
    lut: str
    space: str
    backend: str
    device: str
    threads: Any
    batch: int
    precision: str
    seed: int
    archs: list[Arch]
    measured_ms: list[float]
    predicted_ms: list[float]
    sum_of_ops_ms: list[float]
    overhead_ms: float
    before: Accuracy
    calibration: Calibration | None = None
    after_cv_ms: list[float] = field(default_factory=list)
    after: Accuracy | None = None
    calibrated_lut: str | None = None
    plot: str | None = None
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    interleaved_measured_ms: list[float] = field(default_factory=list)
    interleaved_predicted_ms: list[float] = field(default_factory=list)
    interleaved: Accuracy | None = None
    noise_floor: Accuracy | None = None  # each network's two timings scored against each other
    host_busy_cpus: float | None = None  # CPUs other processes kept busy while the networks ran
    busy: bool = False
    calibration_stored: bool = False

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            **self.before.to_dict(),
            "lut": self.lut, "space": self.space, "backend": self.backend, "device": self.device,
            "threads": self.threads, "batch": self.batch, "precision": self.precision, "seed": self.seed,
            "overhead_ms": self.overhead_ms,
            "networks": [
                {"net_config": a.to_dict()["net_config"], "measured_ms": m, "predicted_ms": p, "sum_of_ops_ms": s,
                 "error_pct": 100.0 * (p - m) / m}
                for a, m, p, s in zip(self.archs, self.measured_ms, self.predicted_ms, self.sum_of_ops_ms)
            ],
            "wall_s": self.wall_s,
            "notes": self.notes,
            "noise_floor": None if self.noise_floor is None else {
                **self.noise_floor.to_dict(),
                "method": "each network timed twice (two sessions in the same interleaved rounds), "
                          "one timing scored against the other"},
            "host_busy_cpus": self.host_busy_cpus, "busy": self.busy,
        }
        if self.calibration is not None and self.after is not None:
            d["before"] = self.before.to_dict()
            d["after"] = self.after.to_dict()
            d["after_method"] = "2-fold cross-validation (each half predicted by the fit on the other half)"
            d["calibration"] = self.calibration.to_lut()
            d["calibrated_lut"] = self.calibrated_lut
            d["calibration_stored"] = self.calibration_stored
            for net, p in zip(d["networks"], self.after_cv_ms):
                net["calibrated_cv_ms"] = p
        if self.interleaved is not None:
            d["interleaved"] = {
                **self.interleaved.to_dict(),
                "method": "sum of ops re-measured in the same interleaved rounds as the networks "
                          "(each op's median less a fresh per-call overhead, the overhead added once)",
            }
            for net, m, p in zip(d["networks"], self.interleaved_measured_ms, self.interleaved_predicted_ms):
                net["interleaved_measured_ms"], net["interleaved_predicted_ms"] = m, p
        if self.plot is not None:
            d["plot"] = self.plot
        return d


def validate_lut(
    lut_name: str,
    space_name: str,
    *,
    samples: int = 20,
    seed: int = 0,
    plot: str | Path | None = None,
    calibrate: bool = False,
    out: str | Path | None = None,
    fit_scale: bool = True,
    remeasure_ops: bool = False,
    allow_busy: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> ValidationResult:
    """``densenas lut validate``: predicted vs measured latency of ``samples`` random
    networks of the space; with ``calibrate``, fit and store a calibration in the LUT
    (at ``out``, default the LUT's own file, rewritten atomically). With
    ``remeasure_ops``, also time the networks' ops afresh interleaved with the networks
    (see ``interleaved_check``), which separates the sum-of-ops model's own error from
    the LUT having been measured at another time or on another machine state.

    Networks run in the LUT's deployment configuration, each timed twice (the noise
    floor). A calibration is stored only when it beats the LUT as is (cross-validated),
    never into a shipped LUT, and not from a busy host unless ``allow_busy``."""
    import time

    from densenas.lut.networks import refusal_reason, time_networks
    from densenas.lut.store import is_shipped

    from densenas.bench import lut_protocol, profiler_for_lut
    from densenas.cost import arch_cost
    from densenas.lut.store import load_lut
    from densenas.space import SearchSpace

    t0 = time.perf_counter()
    table = load_lut(lut_name)
    space = SearchSpace.load(space_name)
    table.require(space, batch=table.batch, precision=table.precision, input_size=space.input_size)
    if calibrate and samples < MIN_CALIBRATION_SAMPLES:
        raise DensenasError(
            f"--calibrate needs --samples >= {MIN_CALIBRATION_SAMPLES} (two halves to fit and test on), got {samples}"
        )
    archs = sample_archs(space, samples, seed)
    if calibrate and len(archs) < MIN_CALIBRATION_SAMPLES:
        raise DensenasError(f"space {space.name} has only {len(archs)} distinct networks; too few to calibrate")
    target = Path(out) if out is not None else Path(table.source)
    if calibrate and is_shipped(target):
        raise DensenasError(f"{target} is a shipped LUT: a calibration fitted here would describe this machine, not "
                            "the one that measured it; pass --out FILE")
    costs = [arch_cost(a, table) for a in archs]
    # One chunk (time_networks): every network is visited in every round, so slow drift of
    # the machine (frequency, neighbours) lands on all of them alike.
    prof = profiler_for_lut(table, deployed=True)
    fp = prof.fingerprint()
    times = time_networks(prof, archs, table.batch, twice=[True] * len(archs), on_done=on_progress)
    measured = times.measured_ms
    predicted = [c.total for c in costs]
    result = ValidationResult(
        lut=table.source, space=space.name, backend=table.backend, device=str(fp["device"]),
        threads=fp.get("threads"), batch=table.batch, precision=table.precision, seed=seed, archs=archs,
        measured_ms=measured, predicted_ms=predicted, sum_of_ops_ms=[c.sum_of_ops for c in costs],
        overhead_ms=table.overhead_ms, before=accuracy(predicted, measured),
        noise_floor=times.noise_floor(), host_busy_cpus=times.host_busy_cpus, busy=times.busy,
    )
    if times.busy:
        result.notes.append(f"other processes kept {times.host_busy_cpus:.2f} CPUs busy while the networks were timed: "
                            "these figures describe a busy host")
    if remeasure_ops:
        protocol = lut_protocol(table)
        prof = profiler_for_lut(table, protocol=dataclasses.replace(protocol, chunk_size=max(protocol.chunk_size, len(archs))))
        with prof:
            result.interleaved_measured_ms, result.interleaved_predicted_ms = interleaved_check(
                prof, archs, table.batch, table.precision)
        result.interleaved = accuracy(result.interleaved_predicted_ms, result.interleaved_measured_ms)
    if table.device not in ("unknown", result.device):
        result.notes.append(f"the LUT was measured on {table.device}, this machine is {result.device}: "
                            "its op times may not describe this CPU")
    measured_threads = table.provenance.threads
    if measured_threads not in (None, result.threads):
        result.notes.append(f"the LUT was measured with {measured_threads} threads, this run used {result.threads}")
    if calibrate:
        sums = result.sum_of_ops_ms
        layers = [len(a.layers()) for a in archs]
        fit_scale = fit_scale and len(archs) >= MIN_SCALE_FIT_SAMPLES
        result.after_cv_ms = cross_validated(sums, measured, table.overhead_ms, seed, layers=layers,
                                             fit_scale=fit_scale)
        result.after = accuracy(result.after_cv_ms, measured)
        result.calibration = fit_calibration(sums, measured, table.overhead_ms, layers=layers, fit_scale=fit_scale)
        table.calibration = result.calibration
        table.meta["calibration_fit"] = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "space": space.name, "samples": len(archs), "seed": seed,
            "method": "Huber least squares on relative residuals (f_scale 0.02); per-layer term kept only "
                      "where it predicts better, leave-one-out",
            "device": result.device, "threads": result.threads,
            "mape_before": result.before.mape, "mape_after_cv": result.after.mape,
        }
        refusal = refusal_reason(result.after.mape, result.before.mape, times.host_busy_cpus if times.busy else None,
                                 allow_busy)
        if refusal is not None:
            result.notes.append(f"calibration {refusal} (cross-validated)")
        else:
            table.meta["calibration_fit"]["host_busy"] = times.host_busy_cpus
            table.save(target)
            result.calibrated_lut = str(target)
            result.calibration_stored = True
    if plot is not None:
        plot_validation(result, plot)
        result.plot = str(plot)
    result.wall_s = time.perf_counter() - t0
    return result


def plot_validation(result: ValidationResult, path: str | Path) -> None:
    """Scatter of predicted against measured latency with the y = x line and the ±5% and
    ±10% bands; with calibration, the cross-validated calibrated predictions too."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from densenas.fileio import atomic_path

    measured = result.measured_ms
    before_label = "LUT prediction" if result.after is None else "before calibration"
    series = [(measured, result.predicted_ms, before_label, result.before,
               dict(marker="o", facecolors="none", edgecolors="#c1121f"))]
    if result.after is not None:
        series.append((measured, result.after_cv_ms, "after calibration (2-fold CV)", result.after,
                       dict(marker="o", color="#1d3557")))
    if result.interleaved is not None:
        series.append((result.interleaved_measured_ms, result.interleaved_predicted_ms,
                       "ops re-measured alongside", result.interleaved, dict(marker="^", color="#e09f3e")))
    values = [v for m, p, _, _, _ in series for v in (*m, *p)]
    lo, hi = min(values) * 0.85, max(values) * 1.15
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    xs = [lo, hi]
    ax.fill_between(xs, [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="#cfe8cf", label="±10%")
    ax.fill_between(xs, [lo * 0.95, hi * 0.95], [lo * 1.05, hi * 1.05], color="#9fd09f", label="±5%")
    ax.plot(xs, xs, color="#333333", lw=1, label="y = x")
    for meas, pred, label, acc, style in series:
        ax.scatter(meas, pred, s=22, label=f"{label}: MAPE {acc.mape:.1f}%, ±5% {100 * acc.within_5pct:.0f}%",
                   zorder=3, **style)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured end-to-end latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    rho = result.before.spearman
    ax.set_title(f"{result.space} on {result.backend} ({result.threads} threads, batch {result.batch})\n"
                 f"{len(measured)} random networks" + (f", Spearman {rho:.3f}" if rho is not None else ""),
                 fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(True, lw=0.3)
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
