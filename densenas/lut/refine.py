"""In-context op costs: what each LUT row costs inside whole networks, fitted from
networks of the space timed as they are deployed.

An op timed alone pays what a network does not (layout reorders, unfused adds, cold
pools) and misses what a network does pay; the difference varies op by op, so one scale
and offset for a whole LUT cannot follow it. Here each row gets its own cost:

1. a *covering* sample of networks: half uniform random walks (the networks a search
   meets), half chosen greedily from pools of random networks to cover the rows seen
   least, until every row appears in several networks;
2. every network timed end to end on the LUT's backend in its deployment configuration
   (``Profiler.deployment_options``), all of them in one chunk of interleaved shuffled
   rounds; a held-out set of uniform random networks that no fit sees is timed in the
   same rounds, each of them twice (two sessions), which gives the host's noise floor;
3. a robust least-squares fit (soft-L1 on relative errors) of
   ``network = sum of its rows' costs + per-call overhead``, with a ridge prior pulling
   each row toward its isolated cost (median less overhead) times one factor that all
   rows share and the fit learns from every network, worth ``prior_strength`` networks
   for a typical row; so a row seen in few networks stays near its isolated value as
   networks scale it. The prior strength is chosen by 4-fold cross-validation over the
   fit set.

The fit is stored (``context_ms`` per row, ``meta.refinement``) only when it predicts the
held-out networks better than the LUT as it is, never into a shipped LUT, and never from
a measurement taken while other processes kept the host busy (unless asked to).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from densenas.errors import DensenasError
from densenas.lut.meta import Calibration

if TYPE_CHECKING:
    import numpy as np

    from densenas.arch import Arch
    from densenas.lut.meta import Deployment
    from densenas.lut.store import LatencyTable
    from densenas.space import SearchSpace
    from densenas.lut.networks import Accuracy

UNCALIBRATED = Calibration()  # a refinement supersedes any calibration
SOFT_L1_SCALE = 0.02  # relative errors beyond 2% count less than quadratically: one odd network cannot drag the fit
PRIOR_GRID = (0.125, 0.5, 2.0, 8.0, 32.0)  # pseudo-networks the isolated value counts as, for a typical row
MIN_COVER = 3  # the covering half of the sample stops once every row is in this many networks
POOL = 48  # random candidates per covering pick
CV_FOLDS = 4
METHOD = ("soft-L1 least squares on relative network errors (f_scale 0.02), ridge toward each row's isolated "
          "cost times one fitted factor shared by all rows, prior strength by 4-fold cross-validation")


# -- the sample -----------------------------------------------------------------------------


def net_key(arch: "Arch") -> str:
    return str(arch.to_dict()["net_config"])


def row_keys(arch: "Arch", batch: int, precision: str) -> list[str]:
    """The LUT row key of every layer of ``arch``, in order (repeats kept)."""
    return [sig.with_run(batch, precision).key() for _, _, sig in arch.layers()]


def network_rows(space: "SearchSpace", batch: int, precision: str) -> set[str]:
    """The LUT rows a derived network of ``space`` can run: every op signature but the
    stacked ``skip_connect`` layers, which a derived network drops."""
    return {i.signature.with_run(batch, precision).key() for i in space.op_instances()
            if not (i.role == "stack" and i.signature.op.skip)}


def covering_sample(space: "SearchSpace", n: int, seed: int, *, batch: int, precision: str,
                    exclude: set[str] | frozenset[str] = frozenset(), min_cover: int = MIN_COVER) -> list["Arch"]:
    """``n`` distinct networks, none in ``exclude``: half uniform random walks, the rest
    picked one by one from pools of random networks as the one adding the most
    occurrences of the rows seen fewer than ``min_cover`` times (uniform once all are)."""
    from densenas.lut.networks import random_arch

    if n < 1:
        raise DensenasError(f"--networks must be a positive integer, got {n}")
    rng = random.Random(seed)
    needed = network_rows(space, batch, precision)
    seen: set[str] = set(exclude)
    count: dict[str, int] = {k: 0 for k in needed}
    chosen: list[Arch] = []

    def take(arch: "Arch") -> None:
        seen.add(net_key(arch))
        chosen.append(arch)
        for k in set(row_keys(arch, batch, precision)):
            count[k] = count.get(k, 0) + 1

    def fresh() -> "Arch | None":
        for _ in range(50):
            arch = random_arch(space, rng)
            if net_key(arch) not in seen:
                return arch
        return None

    def gain(arch: "Arch") -> int:
        return sum(max(0, min_cover - count.get(k, 0)) for k in set(row_keys(arch, batch, precision)))

    while len(chosen) < n:
        if len(chosen) < (n + 1) // 2 or all(c >= min_cover for c in count.values()):
            arch = fresh()
        else:
            pool = [a for a in (fresh() for _ in range(POOL)) if a is not None]
            arch = max(pool, key=gain) if pool else None
        if arch is None:
            break  # the space has no more distinct networks
        take(arch)
    return chosen


# -- the fit --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Design:
    """Networks as counts of LUT rows: ``counts[n, r]`` is how often row ``keys[r]`` is in
    network n; ``isolated[r]`` the row's cost timed alone, less the per-call overhead."""

    keys: list[str]
    counts: "np.ndarray"
    isolated: "np.ndarray"
    overhead_ms: float

    def predict(self, costs: "np.ndarray") -> "np.ndarray":
        """Each network's latency from per-row costs, for the fit, its cross-validation
        and its report: the latency model's network formula with no calibration (a
        refinement supersedes it), over every network at once."""
        return UNCALIBRATED.network_ms(self.counts @ costs, 0, self.overhead_ms)


def isolated_ms(table: "LatencyTable", key: str) -> float:
    """A row's isolated cost within a network (the prior the fit starts from), as the
    latency model defines it."""
    from densenas.cost.latency import LatencyModel

    return LatencyModel(table).isolated_cost_ms(table.rows[key])


def design(table: "LatencyTable", archs: Sequence["Arch"], keys: Sequence[str] | None = None) -> Design:
    import numpy as np

    per_net = [row_keys(a, table.batch, table.precision) for a in archs]
    keys = sorted({k for ks in per_net for k in ks}) if keys is None else list(keys)
    index = {k: j for j, k in enumerate(keys)}
    counts = np.zeros((len(archs), len(keys)))
    for i, ks in enumerate(per_net):
        for k in ks:
            counts[i, index[k]] += 1
    return Design(keys, counts, np.array([isolated_ms(table, k) for k in keys]), table.overhead_ms)


def fit_costs(d: Design, measured: Sequence[float], prior_strength: float) -> "np.ndarray":
    """Per-row in-context costs (ms, net of overhead) from measured network totals.

    Minimises sum soft_l1((pred - measured) / measured / 2%) over networks plus, per row,
    ``prior_strength * ((c - s * c0) / (2% * T))**2 * c_typ / c0``: with T a typical
    network's time and c_typ a typical row's isolated cost, a typical row's scaled
    isolated value weighs as much as ``prior_strength`` networks, and a correction the
    networks cannot pin on one row of several is shared among them in proportion to their
    isolated costs. ``s``, one factor for every row, is fitted freely: what all ops share
    in a network (warm caches, kept layouts) is learnt from every network at once, so a
    row seen in few networks (or none: a column of zeros) is pulled toward its isolated
    cost *as networks scale it*, not toward the isolated cost itself."""
    import numpy as np
    from scipy.optimize import least_squares
    from threadpoolctl import threadpool_limits

    m = np.asarray(measured, dtype=np.float64)
    c0 = d.isolated
    n_nets, n_rows = len(m), len(c0)
    typical_net = float(np.median(m))
    occurrences = d.counts.sum(axis=0)
    typical_row = float((occurrences * c0).sum() / max(occurrences.sum(), 1.0)) or 1e-6
    floor = np.maximum(c0, 0.1 * typical_row)
    prior_w = np.sqrt(prior_strength * typical_row / floor) / (SOFT_L1_SCALE * typical_net)
    # parameters: the row costs, then the shared scale; the residuals are linear in both
    jac = np.zeros((n_nets + n_rows, n_rows + 1))
    jac[:n_nets, :n_rows] = d.counts / (m[:, None] * SOFT_L1_SCALE)
    jac[n_nets:, :n_rows] = np.diag(prior_w)
    jac[n_nets:, n_rows] = -prior_w * c0

    def residuals(x: np.ndarray) -> np.ndarray:
        c, scale = x[:n_rows], x[n_rows]
        data = (d.predict(c) - m) / (m * SOFT_L1_SCALE)
        return np.concatenate([data, prior_w * (c - scale * c0)])

    def loss(z: np.ndarray) -> np.ndarray:
        # soft-L1 on the networks, plain squares on the prior (a prior is not an outlier)
        rho = np.empty((3, z.size))
        zd = z[:n_nets]
        rho[0, :n_nets] = 2.0 * (np.sqrt(1.0 + zd) - 1.0)
        rho[1, :n_nets] = 1.0 / np.sqrt(1.0 + zd)
        rho[2, :n_nets] = -0.5 * (1.0 + zd) ** -1.5
        rho[0, n_nets:], rho[1, n_nets:], rho[2, n_nets:] = z[n_nets:], 1.0, 0.0
        return rho

    with threadpool_limits(1):  # a few hundred rows: one BLAS thread is fastest, more only spin
        fit = least_squares(residuals, np.append(c0, 1.0), jac=lambda _x: jac, bounds=(0.0, np.inf), loss=loss)
    return np.asarray(fit.x[:n_rows])


def choose_prior(d: Design, measured: Sequence[float], seed: int, grid: Sequence[float] = PRIOR_GRID) -> tuple[float, dict[float, float]]:
    """The prior strength of ``grid`` with the lowest cross-validated mean |error| (%)
    over the fit set (``CV_FOLDS`` folds; the strongest prior wins ties, being the
    more cautious fit). Below 2 networks per fold the middle of the grid is taken."""
    import numpy as np

    m = np.asarray(measured, dtype=np.float64)
    n = len(m)
    if n < 2 * CV_FOLDS:
        middle = grid[len(grid) // 2]
        return middle, {}
    order = list(range(n))
    random.Random(seed).shuffle(order)
    folds = [order[f::CV_FOLDS] for f in range(CV_FOLDS)]
    scores: dict[float, float] = {}
    for strength in grid:
        errors = np.empty(n)
        for test in folds:
            train = np.setdiff1d(np.arange(n), test)
            costs = fit_costs(dataclasses.replace(d, counts=d.counts[train]), m[train], strength)
            errors[test] = np.abs(dataclasses.replace(d, counts=d.counts[test]).predict(costs) - m[test]) / m[test]
        scores[strength] = float(100.0 * errors.mean())
    best = min(scores.values())
    return max(s for s, v in scores.items() if v <= best * (1 + 1e-9)), scores


# -- the job --------------------------------------------------------------------------------


def default_deployment(table: "LatencyTable", network_options: dict[str, Any] | None = None) -> "Deployment":
    """The deployment configuration a LUT records (``meta.deployment``): the backend
    options whole networks run with (``network_options``, default the backend's
    ``deployment_options``) beside those its isolated rows were timed with."""
    from densenas.bench import op_options
    from densenas.lut.meta import Deployment
    from densenas.profilers import get_profiler_class

    chosen = get_profiler_class(table.backend).deployment_options() if network_options is None else network_options
    return Deployment(network_options=dict(chosen), op_timing_options=op_options(table))


@dataclass
class RefineResult:
    lut: str
    space: str
    backend: str
    device: str
    threads: Any
    networks: int
    held_out: int
    prior_strength: float
    cv_mape_by_prior: dict[float, float]
    held_out_isolated: "Accuracy"
    held_out_as_is: "Accuracy"
    held_out_refined: "Accuracy"
    noise_floor: "Accuracy | None"
    fit_mape: float
    rows_fitted: int
    min_cover: int
    host_busy_cpus: float | None
    busy: bool
    stored: bool
    refined_lut: str | None
    reason: str
    deployment: "Deployment"
    wall_s: float = 0.0
    timing_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lut": self.lut, "space": self.space, "backend": self.backend, "device": self.device,
            "threads": self.threads, "networks": self.networks, "held_out_networks": self.held_out,
            "prior_strength": self.prior_strength,
            "cv_mape_by_prior": {str(k): v for k, v in self.cv_mape_by_prior.items()},
            "held_out": {"isolated_sum": self.held_out_isolated.to_dict(), "as_is": self.held_out_as_is.to_dict(),
                         "refined": self.held_out_refined.to_dict()},
            "noise_floor": None if self.noise_floor is None else self.noise_floor.to_dict(),
            "fit_mape": self.fit_mape, "rows_fitted": self.rows_fitted, "min_cover": self.min_cover,
            "host_busy_cpus": self.host_busy_cpus, "busy": self.busy, "stored": self.stored,
            "refined_lut": self.refined_lut, "reason": self.reason, "deployment": self.deployment.to_lut(),
            "wall_s": round(self.wall_s, 2), "timing_s": round(self.timing_s, 2), "notes": self.notes,
        }


def refine_lut(
    lut: "str | Path | LatencyTable",
    space_name: str,
    *,
    networks: int = 100,
    held_out: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    allow_busy: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> RefineResult:
    """``densenas lut refine``: fit in-context costs for the rows ``space_name`` uses and
    store them in the LUT at ``out`` (default: the LUT's own file, rewritten atomically)
    when the fit predicts the held-out networks better than the LUT as it is.

    Refuses (one line) to write into a shipped LUT; a fit measured while other processes
    kept the host busy is not stored unless ``allow_busy`` (then ``host_busy`` says so)."""
    import copy

    import numpy as np

    from densenas.bench import network_options, profiler_for_lut
    from densenas.cost import arch_cost
    from densenas.lut.store import is_shipped, load_lut
    from densenas.space import SearchSpace
    from densenas.lut.networks import accuracy, refusal_reason, sample_archs, time_networks

    t0 = time.perf_counter()
    table = load_lut(lut) if isinstance(lut, (str, Path)) else lut
    space = SearchSpace.load(space_name)
    table.require(space, batch=table.batch, precision=table.precision, input_size=space.input_size)
    target = Path(out) if out is not None else Path(table.source)
    if is_shipped(target):
        raise DensenasError(f"{target} is a shipped LUT: refining it needs the machine that measured it; "
                            "profile a LUT here, or pass --out FILE")
    if networks < 4:
        raise DensenasError(f"--networks must be at least 4, got {networks}")
    held = sample_archs(space, held_out if held_out is not None else max(4, networks // 4), seed + 1)
    fit_archs = covering_sample(space, networks, seed, batch=table.batch, precision=table.precision,
                                exclude={net_key(a) for a in held})
    if len(fit_archs) < 4 or len(held) < 2:
        raise DensenasError(f"space {space.name} has too few distinct networks to refine a LUT")

    candidate = copy.deepcopy(table)  # the file changes only if the fit earns its place
    if candidate.deployment is None:
        candidate.deployment = default_deployment(candidate)
    prof = profiler_for_lut(candidate, deployed=True)
    options = network_options(candidate)
    log(f"timing {len(fit_archs)} covering networks and {len(held)} held-out ones (twice each) of {space.name} "
        f"on {prof.name} as deployed ({', '.join(f'{k}={v}' for k, v in options.items()) or 'its default options'})")
    t1 = time.perf_counter()
    times = time_networks(prof, fit_archs + held, table.batch, twice=[False] * len(fit_archs) + [True] * len(held),
                          on_done=on_progress)
    timing_s = time.perf_counter() - t1
    fit_m, held_m = times.measured_ms[: len(fit_archs)], times.measured_ms[len(fit_archs):]

    # every row the space's networks can run is in the design, a row no fit network has
    # as a column of zeros: it still gets the shared factor
    d_fit = design(table, fit_archs, sorted(network_rows(space, table.batch, table.precision)))
    strength, scores = choose_prior(d_fit, fit_m, seed)
    costs = fit_costs(d_fit, fit_m, strength)
    fitted = dict(zip(d_fit.keys, (float(c) for c in costs)))
    seen = d_fit.counts.astype(bool).sum(axis=0)
    cover = int(seen.min()) if d_fit.keys else 0
    rows_fitted = int((seen > 0).sum())
    noise = times.noise_floor()
    deployment = candidate.deployment.model_copy(update={"backend": prof.name, "threads": prof.threads_in_effect(),
                                                         "timing_scope": prof.timing_scope})
    plain = copy.deepcopy(table)
    plain.calibration, plain.refinement = {}, None
    r_isolated = accuracy([arch_cost(a, plain).total for a in held], held_m)
    r_as_is = accuracy([arch_cost(a, table).total for a in held], held_m)
    for key, row in list(candidate.rows.items()):
        context = fitted[key] if key in fitted else isolated_ms(table, key)
        candidate.rows[key] = dataclasses.replace(row, context_ms=context)
    candidate.refinement = {
        "method": METHOD, "networks": len(fit_archs), "prior_strength": strength,
        "held_out": {"networks": float(len(held)), "mape": 0.0},  # scored below, with this refinement in force
        "fitted_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "deployment": deployment.to_lut(), "host_busy": times.host_busy_cpus,
    }
    r_refined = accuracy([arch_cost(a, candidate).total for a in held], held_m)
    candidate.refinement = {**candidate.refinement.to_lut(), "held_out": held_out_record(r_refined, r_as_is, r_isolated, noise)}
    candidate.meta["refinement_fit"] = {
        "space": space.name, "seed": seed, "held_out_networks": len(held), "rows_fitted": rows_fitted,
        "min_cover": cover, "cv_mape_by_prior": {str(k): v for k, v in scores.items()},
        "noise_floor": None if noise is None else noise.to_dict(), "timing_s": round(timing_s, 2),
        "method_held_out": "uniform random networks no fit saw, each timed twice in the same rounds",
    }
    fit_err = np.abs(d_fit.predict(costs) - np.asarray(fit_m)) / np.asarray(fit_m)

    refusal = refusal_reason(r_refined.mape, r_as_is.mape, times.host_busy_cpus if times.busy else None, allow_busy)
    stored = refusal is None
    reason = refusal or "stored: the fit predicts the held-out networks better than the LUT as it is"
    if stored:
        candidate.save(target)
    return RefineResult(
        lut=str(target) if stored else table.source, space=space.name, backend=prof.name, device=table.device,
        threads=prof.threads_in_effect(), networks=len(fit_archs), held_out=len(held), prior_strength=strength,
        cv_mape_by_prior=scores, held_out_isolated=r_isolated, held_out_as_is=r_as_is, held_out_refined=r_refined,
        noise_floor=noise, fit_mape=float(100.0 * fit_err.mean()), rows_fitted=rows_fitted, min_cover=cover,
        host_busy_cpus=times.host_busy_cpus, busy=times.busy, stored=stored,
        refined_lut=str(target) if stored else None, reason=reason, deployment=deployment,
        wall_s=time.perf_counter() - t0, timing_s=timing_s,
    )


def held_out_record(refined: "Accuracy", as_is: "Accuracy", isolated: "Accuracy", noise: "Accuracy | None") -> dict[str, float | None]:
    """The flat metric-to-number map ``meta.refinement.held_out`` holds."""
    record: dict[str, float | None] = {"networks": float(refined.samples)}
    for prefix, acc in (("", refined), ("as_is_", as_is), ("isolated_sum_", isolated), ("noise_floor_", noise)):
        if acc is None:
            continue
        for name in ("mape", "within_5pct", "within_10pct", "max_abs_error_pct", "spearman"):
            record[prefix + name] = getattr(acc, name)
    return record


def print_refinement(result: RefineResult, emit: Callable[[str], None]) -> None:
    """The human summary of a refinement: held-out figures beside the noise floor."""
    emit(f"{result.lut} on {result.backend} ({result.device}, {result.threads} threads): {result.networks} covering "
         f"{result.space} networks (every row in at least {result.min_cover}), prior strength {result.prior_strength:g}, "
         f"{result.held_out} held-out networks; timing {result.timing_s:.1f} s, {result.wall_s:.1f} s in all")
    rows = [("isolated sum", result.held_out_isolated), ("LUT as is", result.held_out_as_is),
            ("in-context", result.held_out_refined), ("noise floor", result.noise_floor)]
    for label, acc in rows:
        if acc is None:
            continue
        rho = "n/a" if acc.spearman is None else f"{acc.spearman:.3f}"
        emit(f"  {label:<13} MAPE {acc.mape:5.2f}%  within ±5% {100 * acc.within_5pct:5.1f}%  "
             f"within ±10% {100 * acc.within_10pct:5.1f}%  max |err| {acc.max_abs_error_pct:5.1f}%  Spearman {rho}")
    if result.busy:
        emit(f"  warning: other processes kept {result.host_busy_cpus:.2f} CPUs busy during the timing")
    emit(f"  {result.reason}")
