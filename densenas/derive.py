"""Derivation: from soft architecture parameters to one derived network (``Arch``).

Two ways:

- ``derive_viterbi``: the paper's rule (run_apis/derive_arch*.py). The block route is
  the path that maximises the product of temperature-1 softmax(beta) along it (Viterbi
  over the block graph), then per chosen block the argmax head op of the branch the
  route enters by and the argmax stack op of each layer, skipped layers dropped.
- ``derive_under_budget``: the most probable network whose predicted cost is within a
  budget, found exactly. The probability of a network is the product of softmax(beta)
  on its route, softmax(head alpha) of its head op on the branch it enters by, and
  softmax(stack alpha) of every layer's op (skip included). Costs are reals, so instead
  of discretising we keep, per block, the Pareto frontier of (cost, log-probability)
  over every partial network ending there: a partial network beaten on both counts by
  another ending at the same block can never complete into the answer.

Costs come from ``CostTables`` and are what a derived network pays: stem, each chosen
head op, each kept stack op (a skipped layer is removed from the network, so it costs
nothing whatever the table charges it for regularising the search), then the final
conv and classifier; the total is ``CostTables.total`` of that sum, the number
``arch_cost`` gives for the same network from the same LUT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from densenas.arch import Arch, ArchBlock, fit_to_space
from densenas.arch_params import ArchParams
from densenas.cost.tables import CostTables
from densenas.errors import DensenasError
from densenas.fileio import read_json
from densenas.space import SearchSpace

MAX_FRONTIER = 2_000_000  # points per combination step; far above what the paper spaces need


@dataclass(frozen=True)
class Choice:
    """One derived network as choices in the supernet: the block route (block 0 first,
    the final conv last), the head op index per routing block on the route, and the
    stack op index of every layer (skip included) per routing block on the route."""

    route: tuple[int, ...]
    head: dict[int, int]
    stack: dict[int, tuple[int, ...]]


# -- probabilities ----------------------------------------------------------------------


def _log_softmax(row: list[float]) -> np.ndarray:
    x = np.asarray(row, dtype=np.float64)
    if x.size == 0:
        return x
    m = x.max()
    return x - (m + math.log(np.exp(x - m).sum()))


@dataclass(frozen=True)
class _LogProbs:
    beta: list[np.ndarray]  # per block, over out_edges (temperature 1)
    head: list[np.ndarray]  # per routing block: (branches, head ops)
    stack: list[np.ndarray]  # per routing block: (layers, stack ops)


def _log_probs(space: SearchSpace, params: ArchParams) -> _LogProbs:
    params.validate(space)
    n_head, n_stack = len(space.head_primitives), len(space.stack_primitives)
    head = [np.stack([_log_softmax(r) for r in m]) if m else np.zeros((0, n_head)) for m in params.head_alphas]
    stack = [np.stack([_log_softmax(r) for r in m]) if m else np.zeros((0, n_stack)) for m in params.stack_alphas]
    return _LogProbs([_log_softmax(b) for b in params.betas], head, stack)


def choice_log_prob(space: SearchSpace, params: ArchParams, choice: Choice) -> float:
    """log P(network) = sum of log softmax(beta) on the route, of the head op's alpha on
    the branch entered by, and of every layer's stack alpha."""
    lp = _log_probs(space, params)
    return _choice_log_prob(space, lp, choice)


def _choice_log_prob(space: SearchSpace, lp: _LogProbs, choice: Choice) -> float:
    total = 0.0
    for src, dst in zip(choice.route, choice.route[1:]):
        total += float(lp.beta[src][space.blocks[src].out_edges.index(dst)])
        if dst != space.final.id:
            total += float(lp.head[dst - 1][space.branch_index(dst, src), choice.head[dst]])
            total += sum(float(lp.stack[dst - 1][layer, op]) for layer, op in enumerate(choice.stack[dst]))
    return total


# -- costs --------------------------------------------------------------------------------


def _tail(space: SearchSpace, tables: CostTables) -> np.ndarray:
    if tables.derived_tail is not None:
        return tables.derived_tail.detach().cpu().double().numpy()
    if not space.config.final_conv_in_derived:
        raise DensenasError(f"cost tables for space {space.name} lack the derived networks' classifier costs; "
                            "build them with CostTables.build")
    return tables.final.detach().cpu().double().numpy() + float(tables.classifier)


def _stack_costs(space: SearchSpace, tables: CostTables) -> list[np.ndarray]:
    """Per routing block (layers, stack ops); a skipped layer is dropped, so it costs 0."""
    out = []
    for t in tables.stack:
        a = t.detach().cpu().double().numpy().copy()
        a[:, list(space.stack_skip_ids)] = 0.0
        out.append(a)
    return out


def choice_cost(space: SearchSpace, tables: CostTables, choice: Choice) -> float:
    """The derived network's predicted cost from the tables (``CostTables.total``), summed
    in the order ``arch_cost`` sums a LUT (stem, each block's head then layers, the tail),
    so for tables built from that LUT the two agree to the last bit."""
    heads = [t.detach().cpu().double().numpy() for t in tables.head]
    stacks = _stack_costs(space, tables)
    tail = _tail(space, tables)
    groups = [float(tables.stem)]
    for src, dst in zip(choice.route, choice.route[1:]):
        if dst == space.final.id:
            groups.append(0.0 + float(tail[space.branch_index(dst, src)]))
            continue
        g = 0.0 + float(heads[dst - 1][space.branch_index(dst, src), choice.head[dst]])
        for layer, op in enumerate(choice.stack[dst]):
            g += float(stacks[dst - 1][layer, op])
        groups.append(g)
    return float(tables.total(sum(groups)))


def arch_table_cost(space: SearchSpace, tables: CostTables, arch: Arch) -> float:
    """The cost the tables give a derived ``arch`` of ``space``: its kept stack ops are
    charged at the first layers' rows (rows of one block are equal in built tables)."""
    fitted = fit_to_space(arch, space)
    route = [0] + [b.block_id for b in fitted.blocks] + [space.final.id]
    head = {b.block_id: space.head_primitives.index(b.head_op) for b in fitted.blocks}
    stack = {b.block_id: tuple(space.stack_primitives.index(op) for op in b.stack_ops) for b in fitted.blocks}
    return choice_cost(space, tables, Choice(tuple(route), head, stack))


# -- from choices to an Arch ------------------------------------------------------------------


def choice_to_arch(space: SearchSpace, choice: Choice, *, num_classes: int | None = None,
                   extra: dict | None = None) -> Arch:
    """Build the validated ``Arch`` (block ids filled) of a choice; skipped layers dropped."""
    cfg = space.config
    blocks = []
    for src, dst in zip(choice.route, choice.route[1:]):
        if dst == space.final.id:
            break
        stack_ops = tuple(op for op in (space.stack_primitives[i] for i in choice.stack[dst]) if not op.skip)
        blocks.append(ArchBlock(
            in_ch=space.blocks[src].ch, out_ch=space.blocks[dst].ch, stride=space.edge_stride(src, dst),
            head_op=space.head_primitives[choice.head[dst]], stack_ops=stack_ops, block_id=dst,
        ))
    last = space.blocks[choice.route[-2]]
    arch = Arch(
        space=cfg.name,
        input_size=cfg.input_size,
        num_classes=num_classes or cfg.num_classes,
        stem=cfg.stem,
        init_dim=cfg.init_dim,
        head_dim=cfg.head_dim if cfg.stem == "mbv2" else None,
        blocks=tuple(blocks),
        final_conv=(last.ch, cfg.last_dim) if cfg.final_conv_in_derived else None,
        extra=dict(extra or {}),
    )
    return fit_to_space(arch.validate(), space)


# -- Viterbi ------------------------------------------------------------------------------------


def viterbi_choice(space: SearchSpace, params: ArchParams) -> Choice:
    """The paper's derivation as choices (see the module docstring)."""
    lp = _log_probs(space, params)
    return _viterbi(space, lp)


def _viterbi(space: SearchSpace, lp: _LogProbs) -> Choice:
    best = [-math.inf] * len(space.blocks)
    prev = [-1] * len(space.blocks)
    best[0] = 0.0
    for b in space.blocks[1:]:
        for src in b.in_edges:  # nearest first; a strict > keeps the first of equals, as the paper
            val = best[src] + float(lp.beta[src][space.blocks[src].out_edges.index(b.id)])
            if val > best[b.id]:
                best[b.id], prev[b.id] = val, src
    route = [space.final.id]
    while route[-1] != 0:
        route.append(prev[route[-1]])
    route.reverse()
    head, stack = {}, {}
    for src, dst in zip(route, route[1:-1]):
        head[dst] = int(np.argmax(lp.head[dst - 1][space.branch_index(dst, src)]))  # first of equals
        stack[dst] = tuple(int(np.argmax(row)) for row in lp.stack[dst - 1])
    return Choice(tuple(route), head, stack)


def derive_viterbi(space: SearchSpace, params: ArchParams, *, num_classes: int | None = None) -> Arch:
    """The paper's derived network: Viterbi route over softmax(beta), argmax ops."""
    lp = _log_probs(space, params)
    choice = _viterbi(space, lp)
    extra = {"derivation": {"method": "viterbi", "log_prob": _choice_log_prob(space, lp, choice)}}
    return choice_to_arch(space, choice, num_classes=num_classes, extra=extra)


# -- exact derivation under a cost budget ---------------------------------------------------------


def _prune(cost: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """Indices of the Pareto frontier (lower cost, higher log-prob), sorted by cost; of
    equal points one is kept."""
    order = np.lexsort((-logp, cost))
    lp = logp[order]
    running = np.maximum.accumulate(lp)
    keep = np.ones(lp.size, dtype=bool)
    keep[1:] = lp[1:] > running[:-1]
    return order[keep]


def _check_size(n: int, what: str) -> None:
    if n > MAX_FRONTIER:
        raise DensenasError(f"exact budget derivation: {what} would combine {n} partial networks, "
                            f"over the cap of {MAX_FRONTIER}; use a smaller space or plain Viterbi derivation")


@dataclass
class _Frontier:
    cost: np.ndarray
    logp: np.ndarray


def _stack_frontier(costs: np.ndarray, logps: np.ndarray, where: str) -> tuple[_Frontier, np.ndarray]:
    """Pareto frontier of a block's stacked layers, layer by layer; returns it and the
    op index of every layer for each frontier point (shape: points x layers)."""
    cost = np.zeros(1)
    logp = np.zeros(1)
    picks = np.zeros((1, 0), dtype=np.int64)
    for layer in range(costs.shape[0]):
        _check_size(cost.size * costs.shape[1], where)
        c = (cost[:, None] + costs[layer][None, :]).ravel()
        v = (logp[:, None] + logps[layer][None, :]).ravel()
        keep = _prune(c, v)
        parent, op = np.divmod(keep, costs.shape[1])
        picks = np.concatenate([picks[parent], op[:, None]], axis=1)
        cost, logp = c[keep], v[keep]
    return _Frontier(cost, logp), picks


@dataclass
class _BlockFrontier:
    """Partial networks ending at one block: for each point, where it came from."""

    front: _Frontier
    src: np.ndarray  # source block
    src_point: np.ndarray  # index into the source block's frontier
    head_op: np.ndarray  # head op index (-1 for the final conv)
    stack_point: np.ndarray  # index into this block's stack frontier (-1 if none)


def _budget_frontier(space: SearchSpace, lp: _LogProbs, tables: CostTables) -> tuple[list[_BlockFrontier], list[np.ndarray]]:
    """Per block, the Pareto frontier of (sum of op costs without the stem, log-prob) of
    every partial network ending there, with back-pointers; and the stack picks."""
    heads = [t.detach().cpu().double().numpy() for t in tables.head]
    stacks = _stack_costs(space, tables)
    tail = _tail(space, tables)
    empty = np.zeros(0, dtype=np.int64)
    fronts: list[_BlockFrontier] = [_BlockFrontier(_Frontier(np.zeros(1), np.zeros(1)), empty, empty, empty, empty)]
    picks: list[np.ndarray] = [np.zeros((1, 0), dtype=np.int64)]
    for b in space.blocks[1:]:
        parts_c, parts_v, parts_src, parts_pt, parts_op = [], [], [], [], []
        for j, src in enumerate(b.in_edges):
            f = fronts[src].front
            beta = float(lp.beta[src][space.blocks[src].out_edges.index(b.id)])
            if b.is_final:
                hc, hv = tail[j:j + 1], np.zeros(1)
            else:
                hc, hv = heads[b.id - 1][j], lp.head[b.id - 1][j]
            _check_size(f.cost.size * hc.size, f"block {b.id}'s branch from block {src}")
            c = (f.cost[:, None] + hc[None, :]).ravel()
            v = (f.logp[:, None] + beta + hv[None, :]).ravel()
            pt, op = np.divmod(np.arange(c.size), hc.size)
            parts_c.append(c)
            parts_v.append(v)
            parts_src.append(np.full(c.size, src))
            parts_pt.append(pt)
            parts_op.append(op if not b.is_final else np.full(c.size, -1))
        c, v = np.concatenate(parts_c), np.concatenate(parts_v)
        keep = _prune(c, v)
        src_arr = np.concatenate(parts_src)[keep]
        pt_arr = np.concatenate(parts_pt)[keep]
        op_arr = np.concatenate(parts_op)[keep]
        c, v = c[keep], v[keep]
        if b.is_final or b.num_layers == 0:
            fronts.append(_BlockFrontier(_Frontier(c, v), src_arr, pt_arr, op_arr, np.full(c.size, -1)))
            picks.append(np.zeros((1, 0), dtype=np.int64))
            continue
        sf, sp = _stack_frontier(stacks[b.id - 1], lp.stack[b.id - 1], f"block {b.id}'s stacked layers")
        _check_size(c.size * sf.cost.size, f"block {b.id}")
        cc = (c[:, None] + sf.cost[None, :]).ravel()
        vv = (v[:, None] + sf.logp[None, :]).ravel()
        keep = _prune(cc, vv)
        g, s = np.divmod(keep, sf.cost.size)
        fronts.append(_BlockFrontier(_Frontier(cc[keep], vv[keep]), src_arr[g], pt_arr[g], op_arr[g], s))
        picks.append(sp)
    return fronts, picks


def _trace(space: SearchSpace, fronts: list[_BlockFrontier], picks: list[np.ndarray], point: int) -> Choice:
    route = [space.final.id]
    head: dict[int, int] = {}
    stack: dict[int, tuple[int, ...]] = {}
    block = space.final.id
    while block != 0:
        f = fronts[block]
        if block != space.final.id:
            head[block] = int(f.head_op[point])
            s = int(f.stack_point[point])
            stack[block] = tuple(int(x) for x in picks[block][s]) if s >= 0 else ()
        block, point = int(f.src[point]), int(f.src_point[point])
        route.append(block)
    route.reverse()
    return Choice(tuple(route), head, stack)


def derive_under_budget(space: SearchSpace, params: ArchParams, tables: CostTables, budget: float, *,
                        num_classes: int | None = None) -> Arch:
    """The most probable derived network whose predicted cost is <= ``budget`` (in the
    tables' unit), exactly; DensenasError naming the cheapest cost when none fits."""
    if not isinstance(budget, (int, float)) or math.isnan(budget):
        raise DensenasError(f"budget must be a number of {tables.unit}, got {budget!r}")
    lp = _log_probs(space, params)
    fronts, picks = _budget_frontier(space, lp, tables)
    final = fronts[space.final.id].front
    totals = tables.total(float(tables.stem) + final.cost)
    # the frontier is sorted by cost with log-prob rising, so the best fit is the dearest that fits;
    # the cost is re-summed in the network's order and checked, so rounding never lets one over
    slack = 1e-9 * max(abs(budget), 1.0)
    for point in np.flatnonzero(totals <= budget + slack)[::-1]:
        choice = _trace(space, fronts, picks, int(point))
        cost = choice_cost(space, tables, choice)
        if cost <= budget:
            extra = {"derivation": {
                "method": "budget", "budget": budget if math.isfinite(budget) else None,
                "cost_type": tables.cost_type, "unit": tables.unit,
                "cost": cost, "log_prob": _choice_log_prob(space, lp, choice),
                **({"cost_source": tables.source} if tables.source else {}),
            }}
            return choice_to_arch(space, choice, num_classes=num_classes, extra=extra)
    on = f" on {tables.source}" if tables.source else ""
    raise DensenasError(
        f"no architecture of space {space.name} fits a budget of {budget:g} {tables.unit}{on}; "
        f"the cheapest costs {float(totals.min()):.6g} {tables.unit}"
    )


def frontier_sizes(space: SearchSpace, params: ArchParams, tables: CostTables) -> list[int]:
    """Frontier size per block (block 0 first): how hard the exact derivation worked."""
    fronts, _ = _budget_frontier(space, _log_probs(space, params), tables)
    return [int(f.front.cost.size) for f in fronts]


# -- what the derive and predict commands run -------------------------------------------------


@dataclass
class DeriveInputs:
    """A soft architecture with everything needed to derive and cost it."""

    space: SearchSpace
    params: ArchParams
    lut: object | None  # densenas.lut.store.LatencyTable
    num_classes: int | None


def read_run(run_dir: Path) -> dict:
    """A search run's ``run.json`` (space, lut, num_classes, ...), or {} when it has none."""
    path = Path(run_dir) / "run.json"
    if not Path(run_dir).is_dir():
        raise DensenasError(f"{run_dir}: run directory not found")
    if not path.is_file():
        return {}
    data = read_json(path, what="run description")
    if not isinstance(data, dict):
        raise DensenasError(f"{path}: not a JSON object")
    return data


def load_derive_inputs(*, run: Path | None = None, arch_params: Path | None = None, space: str | None = None,
                       lut: str | None = None, num_classes: int | None = None) -> DeriveInputs:
    """Resolve ``--run`` or ``--arch-params/--space`` (and ``--lut``) into loaded objects;
    options given on the command line win over what the run recorded."""
    from densenas.arch_params import load_arch_params
    from densenas.lut.store import load_lut

    if (run is None) == (arch_params is None):
        raise DensenasError("give either --run RUN_DIR or --arch-params FILE (with --space)")
    if run is not None:
        info = read_run(run)
        arch_params = Path(run) / "arch_params.json"
        if not arch_params.is_file():
            raise DensenasError(f"{run}: no arch_params.json; has the search finished its first epoch?")
        space = space or _run_space(run, info)
        lut = lut or _str_or_none(info.get("lut"), f"{run}/run.json: field lut")
        if num_classes is None and info.get("num_classes") is not None:
            n = info["num_classes"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise DensenasError(f"{run}/run.json: field num_classes: expected a positive integer, got {n!r}")
            num_classes = n
    if space is None:
        raise DensenasError("give --space (the space the architecture parameters belong to)")
    if num_classes is not None and num_classes < 1:
        raise DensenasError(f"--num-classes must be positive, got {num_classes}")
    sp = SearchSpace.load(space)
    params = load_arch_params(arch_params).validate(sp)
    return DeriveInputs(sp, params, load_lut(lut) if lut else None, num_classes)


def _str_or_none(value: object, where: str) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise DensenasError(f"{where}: expected a string, got {value!r}")


def _run_space(run: Path, info: dict) -> str:
    value = _str_or_none(info.get("space"), f"{run}/run.json: field space")
    if value is None:
        raise DensenasError(f"{run}: run.json does not name the space; give --space")
    beside = Path(run) / value
    if not Path(value).exists() and beside.is_file():
        return str(beside)
    return value


def cost_tables_for(inputs: DeriveInputs, cost_type: str) -> CostTables:
    """Cost tables of the inputs' space: from the LUT for latency, computed for FLOPs."""
    if cost_type == "latency" and inputs.lut is None:
        raise DensenasError("cost type latency needs a LUT: give --lut (a LUT file or a shipped name)")
    return CostTables.build(inputs.space, cost_type, lut=inputs.lut if cost_type == "latency" else None,
                            num_classes=inputs.num_classes)


def arch_blocks(arch: Arch, latency: dict | None = None) -> list[dict]:
    """The derived blocks as JSON rows, with each block's predicted latency when known."""
    per = {} if latency is None else {b["name"]: b["latency_ms"] for b in latency["blocks"]}
    rows = []
    for i, b in enumerate(arch.blocks):
        row = {"index": i, "block_id": b.block_id, "in_ch": b.in_ch, "out_ch": b.out_ch, "stride": b.stride,
               "head_op": b.head_op, "stack_ops": list(b.stack_ops)}
        if latency is not None:
            row["latency_ms"] = per.get(f"block {i}")
        rows.append(row)
    return rows


def run_derive(inputs: DeriveInputs, out: Path, *, budget: float | None = None, cost_type: str = "latency") -> dict:
    """Derive (Viterbi, or exactly under ``budget``), write ``out`` and return the report
    ``derive --json`` prints."""
    from densenas.cost import arch_cost

    tables = None
    if budget is not None:
        tables = cost_tables_for(inputs, cost_type)
        arch = derive_under_budget(inputs.space, inputs.params, tables, budget, num_classes=inputs.num_classes)
    else:
        arch = derive_viterbi(inputs.space, inputs.params, num_classes=inputs.num_classes)
    latency = arch_cost(arch, inputs.lut).to_dict() if inputs.lut is not None else None
    arch.save(out)
    d = arch.extra["derivation"]
    report = {
        "arch": str(out),
        "space": inputs.space.name,
        "method": d["method"],
        "latency_ms": None if latency is None else latency["total"],
        "log_prob": d["log_prob"],
        "blocks": arch_blocks(arch, latency),
        "net_config": arch.to_dict()["net_config"],
    }
    if tables is not None:
        report.update(budget=d["budget"], cost={"type": tables.cost_type, "unit": tables.unit, "value": d["cost"]})
    if inputs.lut is not None:
        report["lut"] = inputs.lut.source
        report["latency"] = latency
    return report


def predict_derived(arch: Arch, lut) -> dict:
    """Predicted latency of a derived network with its per-block breakdown."""
    from densenas.cost import arch_cost

    c = arch_cost(arch, lut)
    return {"latency_ms": c.total, "unit": c.unit, "sum_of_ops_ms": c.sum_of_ops,
            "calibration_scale": c.scale, "calibration_per_layer_ms": c.per_layer, "layers": c.layers,
            "network_offset_ms": c.network_offset, "in_context": c.in_context, "terms": c.terms(), "lut": lut.source, "blocks": c.per_block}


def predict_soft(inputs: DeriveInputs, cost_type: str = "latency") -> dict:
    """The chained (expected) cost of a soft architecture, full softmax, no sampling, and
    beside it the cost of the network Viterbi derives from it: the relaxation gap."""
    from densenas.cost import chained_cost_breakdown

    tables = cost_tables_for(inputs, cost_type)
    betas, heads, stacks = inputs.params.to_tensors(dtype=torch.float64)
    chained = chained_cost_breakdown(inputs.space, tables, betas, heads, stacks)
    expected = float(chained["total"])
    arch = derive_viterbi(inputs.space, inputs.params, num_classes=inputs.num_classes)
    derived = arch_table_cost(inputs.space, tables, arch)
    latency = None
    if cost_type == "latency":
        from densenas.cost import arch_cost

        latency = arch_cost(arch, inputs.lut).to_dict()
    report: dict = {
        "space": inputs.space.name,
        "cost_type": tables.cost_type,
        "unit": tables.unit,
        "source": tables.source,
        "expected": expected,
        "derived": derived,
        "gap": derived - expected,
        "per_block_expected": [float(c) for c in chained["per_block"]],
        "derived_arch": {"log_prob": arch.extra["derivation"]["log_prob"], "blocks": arch_blocks(arch, latency),
                         "net_config": arch.to_dict()["net_config"]},
    }
    if cost_type == "latency":
        report["latency_ms"] = expected
        report["derived_latency_ms"] = derived
    return report
