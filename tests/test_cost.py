"""The cost model: chained cost against the paper's Dropped_Network loop, its gradients,
one-path limits (LUT latency and FLOPs), sampled ops, and the derived network's cost."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from densenas.arch_params import ArchParams
from densenas.cost import CostTables, arch_cost, chained_cost, chained_cost_breakdown
from densenas.cost.tables import _macs
from densenas.counting import count_macs
from densenas.derive import Choice, choice_to_arch, derive_viterbi
from densenas.errors import DensenasError
from densenas.literal import parse_literal
from densenas.lut.store import LatencyTable, load_lut
from densenas.nets import DerivedNet
from densenas.ops import input_shape_for_signature, module_for_signature
from densenas.signature import OpSignature
from densenas.space import SearchSpace
from tests.cost_helpers import OVERHEAD, OFFSET, SCALE, SKIP_MS, random_params, synthetic_lut



# -- helpers --------------------------------------------------------------------------------


def legacy_lists(legacy_dir: Path, name: str) -> list:
    return parse_literal((legacy_dir / name).read_text())


def legacy_tables(space: SearchSpace, lists: list) -> CostTables:
    """Cost tables holding the paper's numbers as its code indexes them (per layer; the
    stack entries the MBV2 list has for blocks 14-16, whose num_layers is 0, unused)."""
    stem, blocks, final, classifier = lists
    n_stack = len(space.stack_primitives)
    head = [torch.tensor(hb, dtype=torch.float64) for hb, _ in blocks]
    stack = [torch.tensor(sl[:b.num_layers], dtype=torch.float64).reshape(b.num_layers, n_stack)
             for b, (_, sl) in zip(space.routing_blocks, blocks)]
    return CostTables("latency", "ms", float(stem), float(classifier), head, stack,
                      torch.tensor(final, dtype=torch.float64))


def random_choice(space: SearchSpace, seed: int, *, force_skip: bool = True) -> Choice:
    rng = random.Random(seed)
    route = [0]
    while route[-1] != space.final.id:
        route.append(rng.choice(space.blocks[route[-1]].out_edges))
    head, stack = {}, {}
    n_head, n_stack = len(space.head_primitives), len(space.stack_primitives)
    for b in route[1:-1]:
        head[b] = rng.randrange(n_head)
        stack[b] = tuple(rng.randrange(n_stack) for _ in range(space.blocks[b].num_layers))
    if force_skip:  # make sure a skipped layer is on the route
        b = next(b for b in route[1:-1] if space.blocks[b].num_layers)
        stack[b] = (space.stack_primitives.index("skip_connect"),) + stack[b][1:]
    return Choice(tuple(route), head, stack)


def one_hot_params(space: SearchSpace, choice: Choice, big: float = 40.0) -> ArchParams:
    """Logits that put all but ~e^-40 of the probability on ``choice``."""
    p = random_params(space, 0, scale=0.0)
    for src, dst in zip(choice.route, choice.route[1:]):
        p.betas[src][space.blocks[src].out_edges.index(dst)] = big
        if dst != space.final.id:
            p.head_alphas[dst - 1][space.branch_index(dst, src)][choice.head[dst]] = big
            for layer, op in enumerate(choice.stack[dst]):
                p.stack_alphas[dst - 1][layer][op] = big
    return p


def paper_chained_cost(space: SearchSpace, lists: list, params: ArchParams, head_index=None, stack_index=None) -> float:
    """The paper's Dropped_Network cost, re-implemented from its formula with plain floats:
    sub_obj[i] = [head-branch costs, stack cost] per block (the stem's cost starts block 0's
    stack entry, the final conv's branches are its head list), then from the last block to
    the first, stack_obj[b] += sum_j softmax(beta_b / T)[j] * (head_obj[out_j][b] + stack_obj[out_j]);
    the network's cost is classifier + stack_obj[0]. Mixed ops: softmax over the sampled alphas."""
    stem, blocks, final, classifier = lists

    def softmax(xs, t=1.0):
        m = max(xs)
        e = [math.exp((x - m) / t) for x in xs]
        return [v / sum(e) for v in e]

    def mixed(alpha, costs, idx):
        idx = list(range(len(alpha))) if idx is None else [int(i) for i in idx]
        return sum(w * costs[k] for w, k in zip(softmax([alpha[k] for k in idx]), idx))

    sub = [[[], float(stem)]]
    for n, b in enumerate(space.routing_blocks):
        head_branches, stack_layers = blocks[n]
        heads = [mixed(params.head_alphas[n][j], head_branches[j], None if head_index is None else head_index[n][j])
                 for j in range(len(b.in_edges))]
        stack = sum(mixed(params.stack_alphas[n][k], stack_layers[k], None if stack_index is None else stack_index[n][k])
                    for k in range(b.num_layers))
        sub.append([heads, stack])
    sub.append([list(final), 0.0])
    weights = [softmax(b, space.softmax_temp) for b in params.betas]
    for block_id in reversed(range(len(space.blocks) - 1)):
        for j, out_id in enumerate(space.blocks[block_id].out_edges):
            head_id = space.blocks[out_id].in_edges.index(block_id)
            sub[block_id][1] += weights[block_id][j] * (sub[out_id][0][head_id] + sub[out_id][1])
    return float(classifier) + sub[0][1]


def sample_indices(alphas: list[torch.Tensor], k: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for a in alphas:
        kk = min(k, a.shape[1])
        if a.shape[0] == 0:
            out.append(torch.zeros((0, kk), dtype=torch.long))
            continue
        idx = torch.multinomial(torch.softmax(a.float(), -1), kk, replacement=False, generator=g)
        out.append(idx.sort(-1).values)
    return out


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny() -> SearchSpace:
    return SearchSpace.load("mbv2-tiny")


@pytest.fixture(scope="module")
def tiny_lut(tiny, tmp_path_factory) -> LatencyTable:
    return synthetic_lut(tiny, tmp_path_factory.mktemp("lut") / "tiny.json")


@pytest.fixture(scope="module")
def tiny_flops(tiny) -> CostTables:
    return CostTables.build(tiny, "flops")


# -- the paper's loop ----------------------------------------------------------------------------

PAPER_LISTS = [("mbv2", "lat_list_densenas_mbv2_xp32"), ("resnet", "lat_list_resv2_32"),
               ("resnet", "lat_list_resv2_32_reg10")]


@pytest.mark.parametrize("space_name, list_name", PAPER_LISTS)
def test_chained_cost_equals_the_papers_dropped_network_loop(legacy_dir, space_name, list_name):
    space = SearchSpace.load(space_name)  # resnet: beta temperature 0.9, so the temperature is exercised
    lists = legacy_lists(legacy_dir, list_name)
    tables = legacy_tables(space, lists)
    for seed in range(3):
        params = random_params(space, seed, scale=1.5)
        tensors = params.to_tensors(dtype=torch.float64)
        got = float(chained_cost(space, tables, *tensors))
        assert got == pytest.approx(paper_chained_cost(space, lists, params), rel=1e-12)
        hi, si = sample_indices(tensors[1], 2, seed), sample_indices(tensors[2], 2, seed + 100)
        got = float(chained_cost(space, tables, *tensors, head_index=hi, stack_index=si))
        assert got == pytest.approx(paper_chained_cost(space, lists, params, hi, si), rel=1e-12)


def test_paper_mbv2_expected_cost_lies_between_cheapest_and_dearest_path(legacy_dir):
    """The expected cost is a probability-weighted mean of one-path costs, so on the
    paper's own TITAN Xp numbers it lies between the cheapest and the dearest path."""
    space = SearchSpace.load("mbv2")
    tables = legacy_tables(space, legacy_lists(legacy_dir, "lat_list_densenas_mbv2_xp32"))
    lo, hi = [0.0] * len(space.blocks), [0.0] * len(space.blocks)
    for b in space.blocks[1:]:
        if b.is_final:
            edge = [(src, float(tables.final[j])) for j, src in enumerate(b.in_edges)]
            edge_hi = edge
            stack_lo = stack_hi = 0.0
        else:
            edge = [(src, float(tables.head[b.id - 1][j].min())) for j, src in enumerate(b.in_edges)]
            edge_hi = [(src, float(tables.head[b.id - 1][j].max())) for j, src in enumerate(b.in_edges)]
            stack_lo = float(tables.stack[b.id - 1].min(-1).values.sum())
            stack_hi = float(tables.stack[b.id - 1].max(-1).values.sum())
        lo[b.id] = min(lo[src] + c for src, c in edge) + stack_lo
        hi[b.id] = max(hi[src] + c for src, c in edge_hi) + stack_hi
    fixed = tables.stem + tables.classifier
    for seed, scale in ((0, 0.0), (1, 1.0), (2, 3.0)):
        c = float(chained_cost(space, tables, *random_params(space, seed, scale).to_tensors()))
        assert fixed + lo[-1] < c < fixed + hi[-1]
    assert 5.0 < fixed + lo[-1] < fixed + hi[-1] < 100.0  # ms at batch 32 on the paper's GPU


def test_shipped_paper_lut_gives_the_papers_chained_cost(legacy_dir):
    """The imported LUT keys the paper's numbers by signature; one signature measured once
    per stacked layer becomes one averaged row, so the cost moves by that noise only."""
    space = SearchSpace.load("mbv2")
    lists = legacy_lists(legacy_dir, "lat_list_densenas_mbv2_xp32")
    tables = CostTables.build(space, "latency", lut=load_lut("mbv2/paper-titanxp"))
    assert torch.equal(tables.head[0], torch.tensor(lists[1][0][0], dtype=torch.float64))  # measured once: exact
    assert tables.stem == pytest.approx(lists[0], rel=1e-12) and tables.classifier == pytest.approx(lists[3], rel=1e-12)
    for seed in range(3):
        params = random_params(space, seed, scale=1.5)
        got = float(chained_cost(space, tables, *params.to_tensors(dtype=torch.float64)))
        assert got == pytest.approx(paper_chained_cost(space, lists, params), rel=5e-3)


# -- gradients -------------------------------------------------------------------------------------


def test_chained_cost_is_differentiable_in_alpha_and_beta(legacy_dir):
    space = SearchSpace.load("mbv2")
    tables = legacy_tables(space, legacy_lists(legacy_dir, "lat_list_densenas_mbv2_xp32"))
    betas, heads, stacks = random_params(space, 4).to_tensors(dtype=torch.float64)
    params = [t.requires_grad_() for t in (*betas, *heads, *stacks)]
    cost = chained_cost(space, tables, betas, heads, stacks)
    cost.backward()
    for b, t in zip(space.blocks, betas):
        if len(b.out_edges) == 1:
            assert torch.all(t.grad == 0)  # a single edge has probability 1 whatever its logit
        else:
            assert torch.all(t.grad.abs() > 0), b.id
    for t in (*heads, *stacks):
        if t.numel():  # every row (branch or layer) moves the cost
            assert torch.all(t.grad.abs().sum(-1) > 0)

    def value() -> float:
        with torch.no_grad():
            return float(chained_cost(space, tables, betas, heads, stacks))

    rng = random.Random(0)
    for _ in range(6):  # central differences agree with autograd
        t = rng.choice([p for p in params if p.numel() > 1])
        i = rng.randrange(t.numel())
        flat, eps = t.data.view(-1), 1e-6
        flat[i] += eps
        up = value()
        flat[i] -= 2 * eps
        down = value()
        flat[i] += eps
        assert t.grad.view(-1)[i].item() == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-9)


# -- one-path limits ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_one_hot_chained_latency_is_the_path_sum_arch_cost_gives(tiny, tiny_lut, seed):
    tables = CostTables.build(tiny, "latency", lut=tiny_lut)
    choice = random_choice(tiny, seed)
    params = one_hot_params(tiny, choice)
    chained = float(chained_cost(tiny, tables, *params.to_tensors(dtype=torch.float64)))
    arch = derive_viterbi(tiny, params)
    assert arch == choice_to_arch(tiny, choice)  # one-hot logits derive the chosen network
    skip = tiny.stack_primitives.index("skip_connect")
    skipped = sum(op == skip for ops in choice.stack.values() for op in ops)
    assert skipped >= 1
    # the supernet charges a skipped layer its LUT row; the derived network has no such layer
    expected = arch_cost(arch, tiny_lut).total + SCALE * skipped * SKIP_MS
    assert chained == pytest.approx(expected, rel=1e-12)


def test_one_hot_chained_macs_equal_the_flop_counter_on_the_derived_net(tiny, tiny_flops):
    for seed in range(3):
        choice = random_choice(tiny, seed)
        chained = float(chained_cost(tiny, tiny_flops, *one_hot_params(tiny, choice).to_tensors(dtype=torch.float64)))
        net = DerivedNet(choice_to_arch(tiny, choice))
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            net.eval()(torch.zeros(1, 3, 32, 32))
        # what the counter counts: convolutions and the classifier's addmm; BN, pooling,
        # ReLU6 and residual adds count nothing, in the per-op tables and the net alike
        assert {str(op) for op in counter.get_flop_counts()["Global"]} == {"aten.convolution", "aten.addmm"}
        macs = counter.get_total_flops() // 2
        assert macs == count_macs(net, (1, 3, 32, 32))
        assert chained * 1e6 == pytest.approx(macs, abs=0.5)


def test_meta_device_macs_equal_a_real_forward(tiny):
    sigs = [s for s in tiny.unique_signatures() if s.op in ("stem_relu6", "classifier", "conv1_1")]
    sigs += [OpSignature("mbconv_k5_t6", 24, 32, 2, 8, 8), OpSignature("skip_connect", 24, 40, 2, 8, 8),
             OpSignature("basic_block", 48, 56, 2, 56, 56), OpSignature("bottle_neck", 64, 72, 1, 28, 28)]
    for sig in sigs:
        assert _macs(sig) == count_macs(module_for_signature(sig), input_shape_for_signature(sig)), sig


# -- sampled ops -------------------------------------------------------------------------------------


def test_only_sampled_ops_count(tiny, tiny_flops):
    betas, heads, stacks = random_params(tiny, 7).to_tensors(dtype=torch.float64)
    hi, si = sample_indices(heads, 2, 1), sample_indices(stacks, 2, 2)
    base = float(chained_cost(tiny, tiny_flops, betas, heads, stacks, hi, si))
    poisoned = CostTables(**{**vars(tiny_flops), "head": [t.clone() for t in tiny_flops.head],
                             "stack": [t.clone() for t in tiny_flops.stack]})
    for n in range(len(tiny.routing_blocks)):
        for table, idx in ((poisoned.head[n], hi[n]), (poisoned.stack[n], si[n])):
            for row in range(table.shape[0]):
                unsampled = [k for k in range(table.shape[1]) if k not in idx[row].tolist()]
                table[row, unsampled] = 1e6
    assert float(chained_cost(tiny, poisoned, betas, heads, stacks, hi, si)) == pytest.approx(base, rel=1e-12)
    assert float(chained_cost(tiny, poisoned, betas, heads, stacks)) > 1e4  # the full relaxation sees them
    poisoned.stack[0][0, si[0][0, 0]] += 1.0  # a sampled op does count
    assert float(chained_cost(tiny, poisoned, betas, heads, stacks, hi, si)) > base


def test_breakdown_per_block_is_the_backward_recursion(tiny, tiny_flops):
    betas, heads, stacks = random_params(tiny, 3).to_tensors(dtype=torch.float64)
    out = chained_cost_breakdown(tiny, tiny_flops, betas, heads, stacks)
    per = [float(c) for c in out["per_block"]]
    assert len(per) == len(tiny.blocks) - 1
    assert float(out["sum_ops"]) == pytest.approx(tiny_flops.stem + per[0] + tiny_flops.classifier, rel=1e-12)
    last = tiny.blocks[7]  # only edge: the final conv; C_7 = S_7 + H_final[7]
    s7 = float((torch.softmax(stacks[6], -1) * tiny_flops.stack[6]).sum())
    assert per[7] == pytest.approx(s7 + float(tiny_flops.final[tiny.final.in_edges.index(last.id)]), rel=1e-12)


# -- tables and the derived network's cost ----------------------------------------------------------


def test_latency_tables_charge_the_overhead_once_per_network(tiny, tiny_lut):
    tables = CostTables.build(tiny, "latency", lut=tiny_lut)
    sig = tiny.head_signature(3, 1, "mbconv_k5_t6")
    assert float(tables.head[2][tiny.branch_index(3, 1), 3]) == pytest.approx(tiny_lut.latency_ms(sig) - OVERHEAD)
    assert tables.network_offset == pytest.approx(OVERHEAD + OFFSET) and tables.scale == SCALE
    assert tables.total(1.0) == pytest.approx(SCALE + OVERHEAD + OFFSET)
    assert tables.source == f"LUT {tiny_lut.source}"
    assert torch.allclose(tables.derived_tail, tables.final + tables.classifier)


def test_skip_reg_charges_a_tenth_of_the_first_op(tiny, tiny_lut):
    tables = CostTables.build(tiny, "latency", lut=tiny_lut, skip_reg=True)
    for t in tables.stack:
        assert torch.allclose(t[:, -1], t[:, 0] / 10)


def test_arch_cost_sums_the_path_and_breaks_it_down(tiny, tiny_lut):
    arch = choice_to_arch(tiny, random_choice(tiny, 5))
    c = arch_cost(arch, tiny_lut)
    ops = [tiny_lut.latency_ms(sig) - OVERHEAD for _, _, sig in arch.layers()]
    assert c.total == pytest.approx(SCALE * sum(ops) + OVERHEAD + OFFSET, rel=1e-12)
    assert c.network_offset == pytest.approx(OVERHEAD + OFFSET)
    names = [b["name"] for b in c.per_block]
    assert names == ["stem"] + [f"block {i}" for i in range(len(arch.blocks))] + ["final conv + classifier"]
    assert [b["block_id"] for b in c.per_block[1:-1]] == [b.block_id for b in arch.blocks]
    assert c.per_block[1]["ops"] == [arch.blocks[0].head_op, *arch.blocks[0].stack_ops]
    assert sum(b["latency_ms"] for b in c.per_block) == pytest.approx(c.total - OVERHEAD - OFFSET, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_a_per_layer_calibration_is_charged_to_every_kept_layer_by_both_cost_paths(tiny, tmp_path, seed):
    per_layer = 0.025
    lut = synthetic_lut(tiny, tmp_path / "per-layer.json")
    lut.calibration = {**lut.calibration.to_lut(), "per_layer_ms": per_layer}
    choice = random_choice(tiny, seed)
    arch = choice_to_arch(tiny, choice)
    c = arch_cost(arch, lut)
    ops = [lut.latency_ms(sig) - OVERHEAD for _, _, sig in arch.layers()]
    assert c.total == pytest.approx(SCALE * sum(ops) + per_layer * len(ops) + OVERHEAD + OFFSET, rel=1e-12)
    assert sum(b["latency_ms"] for b in c.per_block) == pytest.approx(c.total - OVERHEAD - OFFSET, rel=1e-12)
    assert c.terms() == (f"{SCALE:g} x {c.sum_of_ops:.4f} ms of ops +{per_layer:.4f} ms x {len(ops)} layers "
                         f"+{OVERHEAD + OFFSET:.4f} ms per network")
    # the search's tables charge a kept layer the same and a skipped (dropped) layer nothing extra
    tables = CostTables.build(tiny, "latency", lut=lut)
    chained = float(chained_cost(tiny, tables, *one_hot_params(tiny, choice).to_tensors(dtype=torch.float64)))
    skip = tiny.stack_primitives.index("skip_connect")
    skipped = sum(op == skip for ops_ in choice.stack.values() for op in ops_)
    assert chained == pytest.approx(c.total + SCALE * skipped * SKIP_MS, rel=1e-12)


def test_arch_cost_refuses_a_lut_lacking_ops(tiny, tmp_path):
    lut = synthetic_lut(tiny, tmp_path / "partial.json", drop="mbconv_k5_t6")
    arch = choice_to_arch(tiny, Choice((0, 1, 3, 5, 7, 8), {1: 3, 3: 0, 5: 0, 7: 0},
                                       {1: (0, 0), 3: (0, 0), 5: (0, 0), 7: (0,)}))
    with pytest.raises(DensenasError) as e:
        arch_cost(arch, lut)
    assert "lacks 1 of" in str(e.value) and "mbconv_k5_t6(16->24" in str(e.value)
    # the synthetic backend is not installed: the fix measures the space on a built-in one
    assert "densenas profile --space SPACE --backend torch-cpu --batch 1" in str(e.value)
    with pytest.raises(DensenasError, match="lacks"):
        CostTables.build(tiny, "latency", lut=lut)
