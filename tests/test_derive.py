"""Derivation (Viterbi and exact under a budget) and the derive / predict commands."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

import densenas.derive as derive_mod
from densenas.arch import fit_to_space, load_arch
from densenas.arch_params import ArchParams, load_arch_params
from densenas.cost import CostTables, arch_cost, chained_cost
from densenas.counting import count_macs
from densenas.derive import (
    Choice,
    arch_table_cost,
    choice_cost,
    choice_log_prob,
    choice_to_arch,
    derive_under_budget,
    derive_viterbi,
    frontier_sizes,
    load_derive_inputs,
    predict_derived,
    predict_soft,
    run_derive,
    viterbi_choice,
)
from densenas.errors import DensenasError
from densenas.literal import parse_literal
from densenas.lut.store import LatencyTable
from densenas.nets import DerivedNet
from densenas.space import SearchSpace
from tests.cost_helpers import random_params, synthetic_lut
from tests.conftest import assert_user_error, run_cli


MICRO = """\
name: micro
input_size: 16
num_classes: 5
stem: mbv2
init_dim: 8
head_dim: 8
last_dim: 32
softmax_temp: {temp}
primitives:
  head: [mbconv_k3_t3, mbconv_k5_t6]
  stack: [mbconv_k3_t3, mbconv_k5_t3, skip_connect]
adjoin_connect_nums: [3, 3, 3]
blocks:
  ch: [8, 12, 16, 24]
  fm: [8, 4, 4, 4]
  stage: [0, 1, 1, 1, 2]
  num_layers: [0, 2, 1, 2]
"""


# -- helpers ----------------------------------------------------------------------------------


def routes(space: SearchSpace, block: int = 0):
    if block == space.final.id:
        yield (block,)
        return
    for dst in space.blocks[block].out_edges:
        for rest in routes(space, dst):
            yield (block, *rest)


def all_choices(space: SearchSpace):
    n_head, n_stack = len(space.head_primitives), len(space.stack_primitives)
    for route in routes(space):
        blocks = route[1:-1]
        per_block = [list(itertools.product(range(n_head), itertools.product(range(n_stack), repeat=space.blocks[b].num_layers)))
                     for b in blocks]
        for combo in itertools.product(*per_block):
            yield Choice(route, {b: h for b, (h, _) in zip(blocks, combo)}, {b: s for b, (_, s) in zip(blocks, combo)})


def log_softmax(row: list[float], temp: float = 1.0) -> list[float]:
    return torch.log_softmax(torch.tensor(row, dtype=torch.float64) / temp, -1).tolist()


def reference_log_prob(space: SearchSpace, p: ArchParams, c: Choice, beta_temp: float = 1.0) -> float:
    """Written from the definition, independently of densenas.derive."""
    total = 0.0
    for src, dst in zip(c.route, c.route[1:]):
        total += log_softmax(p.betas[src], beta_temp)[space.blocks[src].out_edges.index(dst)]
        if dst != space.final.id:
            total += log_softmax(p.head_alphas[dst - 1][space.blocks[dst].in_edges.index(src)])[c.head[dst]]
            total += sum(log_softmax(p.stack_alphas[dst - 1][k])[op] for k, op in enumerate(c.stack[dst]))
    return total


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> SearchSpace:
    path = tmp_path_factory.mktemp("space") / "micro.yaml"
    path.write_text(MICRO.format(temp=1.0))
    return SearchSpace.load(str(path))


@pytest.fixture(scope="module")
def micro_lut(micro, tmp_path_factory) -> LatencyTable:
    return synthetic_lut(micro, tmp_path_factory.mktemp("lut") / "micro.json")


@pytest.fixture(scope="module")
def micro_brute(micro, micro_lut):
    """Every network of the micro space with its LUT latency by ``arch_cost``."""
    choices = list(all_choices(micro))
    return choices, [arch_cost(choice_to_arch(micro, c), micro_lut).total for c in choices]


@pytest.fixture(scope="module")
def tiny() -> SearchSpace:
    return SearchSpace.load("mbv2-tiny")


@pytest.fixture(scope="module")
def tiny_lut(tiny, tmp_path_factory) -> LatencyTable:
    return synthetic_lut(tiny, tmp_path_factory.mktemp("lut") / "tiny.json")


# -- Viterbi ------------------------------------------------------------------------------------


def test_viterbi_picks_the_most_probable_route(tiny):
    all_routes = list(routes(tiny))
    assert len(all_routes) == tiny.num_paths == 27
    for seed in range(8):
        p = random_params(tiny, seed, scale=2.0)

        def route_log_prob(r, p=p):
            return sum(log_softmax(p.betas[s])[tiny.blocks[s].out_edges.index(d)] for s, d in zip(r, r[1:]))

        best = max(all_routes, key=route_log_prob)
        arch = derive_viterbi(tiny, p)
        assert tuple(b.block_id for b in arch.blocks) == best[1:-1]


def test_viterbi_uses_temperature_one_whatever_the_search_temperature(tmp_path):
    path = tmp_path / "micro-cold.yaml"
    path.write_text(MICRO.format(temp=0.2).replace("name: micro", "name: micro-cold"))
    space = SearchSpace.load(str(path))
    all_routes = list(routes(space))
    differs = 0
    for seed in range(20):
        p = random_params(space, seed, scale=1.0)

        def score(r, t, p=p):
            return sum(log_softmax(p.betas[s], t)[space.blocks[s].out_edges.index(d)] for s, d in zip(r, r[1:]))

        at_one = max(all_routes, key=lambda r: score(r, 1.0))
        differs += at_one != max(all_routes, key=lambda r: score(r, 0.2))
        assert tuple(b.block_id for b in derive_viterbi(space, p).blocks) == at_one[1:-1]
    assert differs > 0  # the temperature matters for these logits, so the test can tell


def test_viterbi_ops_are_argmax_on_the_branch_entered_and_skips_are_dropped(micro):
    p = random_params(micro, 0, scale=0.0)
    p.betas[0] = [0.0, 5.0, 0.0]  # stem -> block 2
    p.betas[2] = [0.0, 5.0]  # block 2 -> final
    p.head_alphas[1] = [[3.0, 0.0], [0.0, 3.0]]  # block 2's branches: from block 1, from block 0 (taken)
    p.stack_alphas[1] = [[0.0, 0.0, 4.0]]  # its one layer: skip
    p.head_alphas[2] = [[3.0, 0.0], [0.0, 3.0], [3.0, 0.0]]  # block 3: argmax differs per branch
    arch = derive_viterbi(micro, p)
    assert [(b.block_id, b.head_op, b.stack_ops) for b in arch.blocks] == [(2, "mbconv_k5_t6", ())]
    assert arch.final_conv == (16, 32) and arch.stem == "mbv2" and (arch.init_dim, arch.head_dim) == (8, 8)

    p.betas[2] = [5.0, 0.0]  # block 2 -> block 3 -> final
    p.betas[3] = [0.0]
    p.stack_alphas[2] = [[4.0, 0.0, 0.0], [0.0, 0.0, 4.0]]
    arch = derive_viterbi(micro, p, num_classes=3)
    assert [(b.block_id, b.head_op, b.stack_ops) for b in arch.blocks] == \
        [(2, "mbconv_k5_t6", ()), (3, "mbconv_k3_t3", ("mbconv_k3_t3",))]  # entered from block 2: branch 0
    assert arch.num_classes == 3 and fit_to_space(arch, micro) == arch
    d = arch.extra["derivation"]
    assert d["method"] == "viterbi"
    c = Choice((0, 2, 3, 4), {2: 1, 3: 0}, {2: (2,), 3: (0, 2)})
    assert d["log_prob"] == pytest.approx(reference_log_prob(micro, p, c), abs=1e-12)


def test_derived_networks_build_and_run(tiny):
    arch = derive_viterbi(tiny, random_params(tiny, 3), num_classes=7)
    y = DerivedNet(arch).eval()(torch.zeros(2, 3, 32, 32))
    assert y.shape == (2, 7)


def test_resnet_derivation_has_no_final_conv_and_is_costed_as_built(tmp_path):
    space = SearchSpace.load("resnet")
    arch = derive_viterbi(space, random_params(space, 1, scale=2.0))
    assert arch.final_conv is None and arch.stem == "resnet" and arch.head_dim is None
    assert {b.head_op for b in arch.blocks} == {"basic_block"}
    tables = CostTables.build(space, "flops")
    with torch.device("meta"):  # shapes only: the FLOP counter needs no arithmetic
        net = DerivedNet(arch)
    assert arch_table_cost(space, tables, arch) * 1e6 == pytest.approx(count_macs(net, (1, 3, 224, 224)), abs=0.5)


# -- exact derivation under a budget ----------------------------------------------------------------


@pytest.mark.parametrize("seed, scale", [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0)])
def test_budget_derivation_is_exact_against_brute_force(micro, micro_lut, micro_brute, seed, scale):
    choices, costs = micro_brute
    assert len(choices) == 2526
    tables = CostTables.build(micro, "latency", lut=micro_lut)
    p = random_params(micro, seed, scale)
    logps = [reference_log_prob(micro, p, c) for c in choices]
    ordered = sorted(costs)
    budgets = [ordered[0], ordered[len(ordered) // 10], ordered[len(ordered) // 3], ordered[2 * len(ordered) // 3],
               ordered[-1] + 1.0]
    for budget in budgets:
        best = max(lp for lp, c in zip(logps, costs) if c <= budget)
        arch = derive_under_budget(micro, p, tables, budget)
        d = arch.extra["derivation"]
        assert d["method"] == "budget" and d["unit"] == "ms"
        assert d["log_prob"] == pytest.approx(best, abs=1e-9)
        got = arch_cost(arch, micro_lut).total
        assert got <= budget and got == d["cost"]  # the same number, summed the same way
    with pytest.raises(DensenasError) as e:
        derive_under_budget(micro, p, tables, ordered[0] * (1 - 1e-9))
    assert str(e.value) == (f"no architecture of space micro fits a budget of {ordered[0] * (1 - 1e-9):g} ms on "
                            f"LUT {micro_lut.source}; the cheapest costs {ordered[0]:.6g} ms")


def test_choice_cost_is_arch_cost_to_the_last_bit(micro, micro_lut, micro_brute):
    tables = CostTables.build(micro, "latency", lut=micro_lut)
    choices, costs = micro_brute
    for c, expected in list(zip(choices, costs))[::97]:
        assert choice_cost(micro, tables, c) == expected


def test_unbounded_budget_finds_the_jointly_most_probable_network(micro, micro_lut, micro_brute):
    tables = CostTables.build(micro, "latency", lut=micro_lut)
    choices, _ = micro_brute
    p = random_params(micro, 9, 2.0)
    best = max(reference_log_prob(micro, p, c) for c in choices)
    arch = derive_under_budget(micro, p, tables, math.inf)
    assert arch.extra["derivation"]["log_prob"] == pytest.approx(best, abs=1e-9)
    assert best >= derive_viterbi(micro, p).extra["derivation"]["log_prob"] - 1e-12


def test_budget_derivation_on_the_paper_mbv2_space(legacy_dir):
    """The paper's space and TITAN Xp numbers: frontiers stay small, results never exceed
    the budget, and more budget never buys a less probable network."""
    space = SearchSpace.load("mbv2")
    stem, blocks, final, classifier = parse_literal((legacy_dir / "lat_list_densenas_mbv2_xp32").read_text())
    tables = CostTables(
        "latency", "ms", float(stem), float(classifier), [torch.tensor(h, dtype=torch.float64) for h, _ in blocks],
        [torch.tensor(s[:b.num_layers], dtype=torch.float64).reshape(b.num_layers, 7)
         for b, (_, s) in zip(space.routing_blocks, blocks)], torch.tensor(final, dtype=torch.float64), source="paper list")
    for seed in range(3):
        p = random_params(space, seed, scale=2.0)
        sizes = frontier_sizes(space, p, tables)
        assert max(sizes) < 5000, sizes
        viterbi = derive_viterbi(space, p)
        v_cost = arch_table_cost(space, tables, viterbi)
        last = -math.inf
        for budget in (12.0, 16.0, 20.0, 25.0, 30.0, 40.0):
            try:
                arch = derive_under_budget(space, p, tables, budget)
            except DensenasError as e:
                assert "the cheapest costs" in str(e) and last == -math.inf
                continue
            d = arch.extra["derivation"]
            assert d["cost"] <= budget and d["log_prob"] >= last - 1e-12
            last = d["log_prob"]
        at_viterbi = derive_under_budget(space, p, tables, v_cost)
        # the Viterbi network itself fits its own cost, so the exact optimum is at least as probable
        v_log_prob = choice_log_prob(space, p, viterbi_choice(space, p))
        assert at_viterbi.extra["derivation"]["log_prob"] >= v_log_prob - 1e-9


def test_frontier_cap_is_a_clear_error(micro, micro_lut, monkeypatch):
    tables = CostTables.build(micro, "latency", lut=micro_lut)
    monkeypatch.setattr(derive_mod, "MAX_FRONTIER", 5)
    with pytest.raises(DensenasError, match="over the cap of 5"):
        derive_under_budget(micro, random_params(micro, 0), tables, 100.0)


def test_budget_must_be_a_number(micro, micro_lut):
    tables = CostTables.build(micro, "latency", lut=micro_lut)
    with pytest.raises(DensenasError, match="budget must be a number of ms"):
        derive_under_budget(micro, random_params(micro, 0), tables, math.nan)


def test_flops_budget_matches_the_flop_counter(micro):
    tables = CostTables.build(micro, "flops")
    p = random_params(micro, 5, 2.0)
    arch = derive_under_budget(micro, p, tables, 1.0)
    d = arch.extra["derivation"]
    assert d["unit"] == "M MACs" and d["cost"] <= 1.0
    assert d["cost"] * 1e6 == pytest.approx(count_macs(DerivedNet(arch), (1, 3, 16, 16)), abs=0.5)


# -- the commands ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_params_file(tiny, tmp_path_factory) -> Path:
    return random_params(tiny, 11, 2.0).save(tmp_path_factory.mktemp("params") / "arch_params.json")


def _json(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_derive_and_predict_commands_agree(tiny, tiny_lut, tiny_params_file, tmp_path):
    out = tmp_path / "arch.json"
    d = _json(run_cli("derive", "--arch-params", str(tiny_params_file), "--space", "mbv2-tiny",
                      "--lut", tiny_lut.source, "--out", str(out), "--json"))
    arch = load_arch(out)
    p = load_arch_params(tiny_params_file)
    assert arch == derive_viterbi(tiny, p)
    assert d["arch"] == str(out) and d["method"] == "viterbi"
    assert d["latency_ms"] == arch_cost(arch, tiny_lut).total
    assert d["log_prob"] == pytest.approx(derive_viterbi(tiny, p).extra["derivation"]["log_prob"], abs=1e-12)
    assert [b["block_id"] for b in d["blocks"]] == [b.block_id for b in arch.blocks]
    assert sum(b["latency_ms"] for b in d["blocks"]) < d["latency_ms"]

    pr = _json(run_cli("predict", "--arch", str(out), "--lut", tiny_lut.source, "--json"))
    assert pr["latency_ms"] == d["latency_ms"]
    assert [b["name"] for b in pr["blocks"]][0] == "stem" and pr["blocks"][-1]["name"] == "final conv + classifier"

    soft = _json(run_cli("predict", "--arch-params", str(tiny_params_file), "--space", "mbv2-tiny",
                         "--lut", tiny_lut.source, "--json"))
    tables = CostTables.build(tiny, "latency", lut=tiny_lut)
    expected = float(chained_cost(tiny, tables, *p.to_tensors(dtype=torch.float64)))
    assert soft["latency_ms"] == pytest.approx(expected, rel=1e-12)
    assert soft["derived_latency_ms"] == d["latency_ms"]
    assert soft["gap"] == pytest.approx(soft["derived_latency_ms"] - soft["latency_ms"])


def test_derive_from_a_run_under_a_budget(tiny, tiny_lut, tiny_params_file, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "arch_params.json").write_bytes(tiny_params_file.read_bytes())
    (run / "run.json").write_text(json.dumps({"space": "mbv2-tiny", "lut": tiny_lut.source, "num_classes": 10}))
    p = load_arch_params(tiny_params_file)
    budget = round(arch_cost(derive_viterbi(tiny, p), tiny_lut).total * 0.8, 3)
    proc = run_cli("derive", "--run", str(run), "--budget", str(budget))
    assert proc.returncode == 0, proc.stderr
    assert "exact budget derivation" in proc.stdout and "predicted latency" in proc.stdout
    assert f"wrote {run / 'arch.json'}" in proc.stderr
    arch = load_arch(run / "arch.json")
    d = arch.extra["derivation"]
    assert d["method"] == "budget" and d["budget"] == budget and d["cost_source"] == f"LUT {tiny_lut.source}"
    assert arch_cost(arch, tiny_lut).total == d["cost"] <= budget
    assert arch == derive_under_budget(tiny, p, CostTables.build(tiny, "latency", lut=tiny_lut), budget)

    with pytest.raises(DensenasError) as e:
        run_derive(load_derive_inputs(run=run), tmp_path / "x.json", budget=0.5)
    assert str(e.value).startswith(f"no architecture of space mbv2-tiny fits a budget of 0.5 ms on LUT {tiny_lut.source}; "
                                   "the cheapest costs ")
    assert not (tmp_path / "x.json").exists()


def test_run_json_supplies_space_lut_and_classes_and_options_win(tiny_lut, tiny_params_file, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "arch_params.json").write_bytes(tiny_params_file.read_bytes())
    (run / "run.json").write_text(json.dumps({"space": "mbv2-tiny", "lut": tiny_lut.source, "num_classes": 7}))
    inputs = load_derive_inputs(run=run)
    assert (inputs.space.name, inputs.lut.source, inputs.num_classes) == ("mbv2-tiny", tiny_lut.source, 7)
    assert load_derive_inputs(run=run, num_classes=3).num_classes == 3
    (run / "run.json").write_text(json.dumps({"num_classes": 7}))
    with pytest.raises(DensenasError, match="run.json does not name the space; give --space"):
        load_derive_inputs(run=run)
    (run / "arch_params.json").unlink()
    with pytest.raises(DensenasError, match="no arch_params.json"):
        load_derive_inputs(run=run, space="mbv2-tiny")
    with pytest.raises(DensenasError, match="give either --run RUN_DIR or --arch-params"):
        load_derive_inputs()
    with pytest.raises(DensenasError, match="written for space 'mbv2-tiny', not 'mbv2'"):
        load_derive_inputs(arch_params=tiny_params_file, space="mbv2")


def test_predict_refuses_a_lut_lacking_ops_and_ambiguous_input(tiny, tiny_params_file, tmp_path):
    lut = synthetic_lut(tiny, tmp_path / "partial.json", drop="mbconv_k3_t3")
    derive_viterbi(tiny, load_arch_params(tiny_params_file)).save(tmp_path / "arch.json")
    with pytest.raises(DensenasError) as e:
        predict_derived(load_arch(tmp_path / "arch.json"), lut)
    assert f"LUT {lut.source} lacks 1 of " in str(e.value) and "mbconv_k3_t3(" in str(e.value)
    assert "fill them with `densenas profile --space SPACE --backend torch-cpu" in str(e.value)  # synthetic: not installed
    with pytest.raises(DensenasError, match=f"LUT {lut.source} lacks"):
        predict_soft(load_derive_inputs(arch_params=tiny_params_file, space="mbv2-tiny", lut=lut.source))
    proc = run_cli("predict", "--arch", str(tmp_path / "arch.json"), "--arch-params", str(tiny_params_file))
    assert_user_error(proc, "give either --arch")


def test_predict_soft_flops_gap_is_against_the_flop_counter(tiny, tiny_params_file):
    soft = predict_soft(load_derive_inputs(arch_params=tiny_params_file, space="mbv2-tiny"), "flops")
    assert soft["unit"] == "M MACs" and "latency_ms" not in soft
    arch = derive_viterbi(tiny, load_arch_params(tiny_params_file))
    assert soft["derived"] * 1e6 == pytest.approx(count_macs(DerivedNet(arch), (1, 3, 32, 32)), abs=0.5)
    tables = CostTables.build(tiny, "flops")
    expected = float(chained_cost(tiny, tables, *load_arch_params(tiny_params_file).to_tensors(dtype=torch.float64)))
    assert soft["expected"] == pytest.approx(expected, rel=1e-12)
    assert soft["gap"] == pytest.approx(soft["derived"] - soft["expected"])


def test_skip_regularisation_does_not_change_what_a_derived_network_costs(micro, micro_lut):
    """skip_reg charges skipped layers in the search; the derived network has no such layer."""
    plain = CostTables.build(micro, "latency", lut=micro_lut)
    reg = CostTables.build(micro, "latency", lut=micro_lut, skip_reg=True)
    assert not torch.equal(plain.stack[0], reg.stack[0])
    for seed in range(3):
        p = random_params(micro, seed, 2.0)
        for budget in (3.0, 4.0, 6.0):
            try:
                a = derive_under_budget(micro, p, plain, budget)
            except DensenasError:
                with pytest.raises(DensenasError):
                    derive_under_budget(micro, p, reg, budget)
                continue
            assert derive_under_budget(micro, p, reg, budget) == a
