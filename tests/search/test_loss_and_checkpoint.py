"""The cost term's two modes, the derived network's log-probability, and the checkpoint's
RNG states surviving a weights-only load."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from densenas.arch_params import ArchParams
from densenas.derive import choice_log_prob as derive_log_prob
from densenas.derive import viterbi_choice
from densenas.nets import SuperNet
from densenas.runtime import capture_rng, restore_rng
from densenas.search.checkpoint import load_checkpoint, save_checkpoint
from densenas.search.loss import TARGET_BAND, CostObjective, choice_log_prob
from densenas.space import SearchSpace


def _grad(objective: CostObjective, cost_value: float, *args) -> tuple[float, float]:
    cost = torch.tensor(cost_value, dtype=torch.float64, requires_grad=True)
    term = objective.term(cost, *args)
    term.backward()
    return float(term.detach()), float(cost.grad)


def test_plain_term_is_the_papers_log_cost():
    obj = CostObjective(0.3, 15.0)
    value, grad = _grad(obj, 2.0)
    assert value == pytest.approx(0.3 * math.log(2.0) / math.log(15.0))
    assert grad == pytest.approx(0.3 / math.log(15.0) / 2.0)


def test_target_term_pushes_by_the_side_of_the_derived_network_and_commits_near_it():
    obj = CostObjective(0.3, 15.0, target=1.0)
    scale = 0.3 / math.log(15.0)
    lp = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    # derived network 30% too slow: full push down, the value is the log distance
    value, grad = _grad(obj, 2.0, 1.3, lp)
    assert value == pytest.approx(scale * math.log(1.3))
    assert grad == pytest.approx(scale / 2.0)
    assert float(lp.grad) == 0.0  # no commitment far from the target
    # derived network 30% too fast: the same push, upward
    _, grad = _grad(obj, 2.0, 1 / 1.3, lp)
    assert grad == pytest.approx(-scale / 2.0)
    # inside the band: a partial push and the commitment (raise log P of the derived network)
    gap = math.log(1.02)
    lp = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    cost = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    obj.term(cost, 1.02, lp).backward()
    assert float(cost.grad) == pytest.approx(scale * gap / TARGET_BAND / 2.0)
    assert float(lp.grad) == pytest.approx(-scale * (1 - gap / TARGET_BAND))


def test_derived_log_prob_matches_derivation_and_has_gradients():
    space = SearchSpace.load("mbv2-tiny")
    torch.manual_seed(0)
    net = SuperNet(space, 10, init_scale=0.5)
    params = ArchParams.from_supernet(net)
    choice = viterbi_choice(space, params)
    lp = choice_log_prob(space, net.betas, net.head_alphas, net.stack_alphas, choice)
    assert float(lp.detach()) == pytest.approx(derive_log_prob(space, params, choice), rel=1e-9)
    lp.backward()
    route_betas = [net.betas[b] for b in choice.route[:-1] if net.betas[b].numel() > 1]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in route_betas)


def test_checkpoint_rng_states_survive_a_weights_only_load(tmp_path):
    torch.manual_seed(5)
    np.random.seed(6)
    random.seed(7)
    save_checkpoint(tmp_path / "c.pt", {"rng": capture_rng(), "epoch": 0})
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"])  # torch.load(weights_only=True) inside
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1])
    assert [random.random() for _ in range(3)] == expected[2]


def test_foreign_checkpoint_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(Exception, match="other.pt: field schema"):
        load_checkpoint(path)
