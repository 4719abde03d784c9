"""Path sampling and the alpha rescaling: the pieces that make a step reproducible and
faithful to the paper's arch update."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from densenas.search.optim import rescale_sampled_
from densenas.search.sampler import NonFiniteError, PathSampler, step_seed


def _alphas(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 5, generator=g), torch.randn(0, 5), torch.randn(2, 5, generator=g)]


def test_same_step_coordinates_give_the_same_path_in_any_sampler():
    alphas = _alphas()
    a, b = PathSampler(7), PathSampler(7)
    b.reseed(9, "arch", 4)  # state left over from another step must not matter
    b.sample(alphas, alphas, 2, "prob")
    a.reseed(3, "arch", 5)
    b.reseed(3, "arch", 5)
    pa, pb = a.sample(alphas, alphas, 2, "prob"), b.sample(alphas, alphas, 2, "prob")
    for x, y in zip(pa.head + pa.stack, pb.head + pb.stack):
        assert torch.equal(x, y)


def test_steps_and_phases_draw_different_paths():
    seeds = {step_seed(1, e, p, s) for e in range(3) for p in ("arch", "weights") for s in range(20)}
    assert len(seeds) == 3 * 2 * 20


def test_sampled_ops_are_distinct_sorted_and_shaped_per_row():
    sampler = PathSampler(0)
    alphas = _alphas()
    for step in range(20):
        sampler.reseed(0, "arch", step)
        path = sampler.sample(alphas, alphas, 2, "prob")
        for a, idx in zip(alphas, path.head):
            assert idx.shape == (a.shape[0], 2) and idx.dtype == torch.long
            if a.shape[0]:
                assert bool((idx[:, 0] < idx[:, 1]).all())


def test_all_ops_when_k_covers_the_row():
    path = PathSampler(0).sample(_alphas(), _alphas(), 5, "prob")
    assert torch.equal(path.head[0], torch.arange(5).repeat(3, 1))


def test_prob_policy_follows_softmax_and_uniform_ignores_it():
    alpha = [torch.tensor([[4.0, 0.0, 0.0, 0.0]])]  # op 0 has ~95% of the mass
    counts = {"prob": torch.zeros(4), "uniform": torch.zeros(4)}
    sampler = PathSampler(3)
    for policy in counts:
        for step in range(400):
            sampler.reseed(0, policy, step)
            counts[policy][sampler.sample(alpha, [], 1, policy).head[0][0, 0]] += 1
    assert counts["prob"][0] > 330
    assert 60 < counts["uniform"][0] < 140


def test_non_finite_alphas_are_a_clear_error():
    bad = [torch.tensor([[float("nan"), 0.0, 1.0]])]
    with pytest.raises(NonFiniteError, match=r"no longer finite \(epoch 3, arch step 1\)"):
        PathSampler(0).sample(bad, [], 2, "prob", where=" (epoch 3, arch step 1)")


def test_rescale_keeps_the_unsampled_ops_probability():
    alpha = torch.tensor([[0.3, -0.2, 0.9, 0.1, 0.0], [1.0, 0.5, -1.0, 0.2, 0.3]])
    idx = torch.tensor([[1, 3], [0, 4]])
    before = F.softmax(alpha, -1)
    old = alpha.gather(-1, idx).clone()
    stepped = alpha.clone()
    stepped.scatter_add_(-1, idx, torch.tensor([[0.7, -0.4], [-0.5, 0.8]]))  # what an arch step did
    rescale_sampled_([stepped], [old], [idx])
    after = F.softmax(stepped, -1)
    unsampled = torch.ones_like(alpha, dtype=torch.bool).scatter_(-1, idx, False)
    assert torch.allclose(after[unsampled], before[unsampled], atol=1e-6)
    # the step still moved mass between the two sampled ops
    assert not torch.allclose(after.gather(-1, idx), before.gather(-1, idx), atol=1e-3)
    assert torch.allclose(after.gather(-1, idx).sum(-1), before.gather(-1, idx).sum(-1), atol=1e-6)


def test_routes_follow_the_space_edges_reproducibly_and_lean_on_beta():
    from densenas.space import SearchSpace

    space = SearchSpace.load("mbv2-tiny")
    weights = [torch.full((len(b.out_edges),), 1.0 / max(len(b.out_edges), 1)) for b in space.blocks]
    sampler = PathSampler(3)
    routes = set()
    for step in range(40):
        sampler.reseed(0, "weights", step)
        route = sampler.route(space, weights, "uniform")
        sampler.reseed(0, "weights", step)
        assert sampler.route(space, weights, "uniform") == route
        assert route[0] == 0 and route[-1] == space.final.id
        assert all(dst in space.blocks[src].out_edges for src, dst in zip(route, route[1:]))
        routes.add(route)
    assert len(routes) > 10
    # softmax(beta) all on block 0's first edge: every route takes it
    lean = [w.clone() for w in weights]
    lean[0] = torch.zeros_like(lean[0])
    lean[0][0] = 1.0
    for step in range(10):
        sampler.reseed(1, "weights", step)
        assert sampler.route(space, lean, "prob")[1] == space.blocks[0].out_edges[0]


def test_skips_move_after_the_other_layers_of_their_block():
    from densenas.search.sampler import SampledPath

    path = SampledPath([torch.tensor([[1]])], [torch.tensor([[4], [2], [4], [0]]), torch.tensor([[3], [1]])])
    moved = path.skips_last((4,))
    assert moved.stack[0].tolist() == [[2], [0], [4], [4]] and moved.stack[1].tolist() == [[3], [1]]
    assert path.skips_last(()) is path


def test_sampled_routes_need_one_op_per_layer():
    from pydantic import ValidationError

    from densenas.space.config import SearchSettings

    with pytest.raises(ValidationError, match="weight_sample_num must be 1"):
        SearchSettings(routes="sampled", weight_sample_num=2)
    assert SearchSettings(routes="sampled").weight_sample_num == 1
