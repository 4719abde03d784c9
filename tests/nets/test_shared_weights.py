"""Shared supernet weights: MBConv candidates as slices of one largest kernel, each with its
own batch norms; what a derived network inherits from them."""

import pytest
import torch

from densenas.nets import DerivedNet, SuperNet
from densenas.nets.inherit import copy_path_weights
from densenas.nets.supernet import MixedOp
from densenas.space import SearchSpace
from densenas.lut.networks import sample_archs

OPS = ["mbconv_k3_t3", "mbconv_k3_t6", "mbconv_k5_t3", "mbconv_k5_t6", "skip_connect"]


@pytest.mark.parametrize("stride", [1, 2])
def test_each_shared_candidate_computes_what_its_standalone_mbconv_computes(stride):
    torch.manual_seed(0)
    mixed = MixedOp(OPS, 8, 8 if stride == 1 else 12, stride, weights="shared").train()
    x = torch.randn(4, 8, 8, 8)
    for i in range(len(OPS)):
        alone = mixed.candidate(i)
        assert torch.allclose(mixed.run(i, x), alone(x), atol=1e-6), OPS[i]


def test_candidates_are_slices_of_one_kernel_and_train_it_together():
    torch.manual_seed(0)
    mixed = MixedOp(OPS, 8, 8, 1, weights="shared")
    shared = mixed.shared
    assert shared.expand.weight.shape == (48, 8, 1, 1) and shared.depthwise.weight.shape == (48, 1, 5, 5)
    k3_t3 = mixed.candidate(0)
    # the first 3*8 expanded channels and the centre 3x3 of the 5x5 depthwise kernel
    assert torch.equal(k3_t3.expand[0].weight, shared.expand.weight[:24])
    assert torch.equal(k3_t3.depthwise[0].weight, shared.depthwise.weight[:24, :, 1:4, 1:4])
    mixed.run(0, torch.randn(2, 8, 6, 6)).sum().backward()
    g = shared.depthwise.weight.grad
    assert g[:24, :, 1:4, 1:4].abs().sum() > 0
    assert not g[24:].any() and not g[:, :, 0].any() and not g[:, :, :, 4].any()
    # one batch norm per candidate: a step of one leaves the others' statistics alone
    assert not torch.equal(mixed.shared.norms[0][2].running_var, mixed.shared.norms[1][2].running_var)


def test_shared_supernet_has_fewer_weights_and_the_tiny_space_uses_it():
    space = SearchSpace.load("mbv2-tiny")
    assert space.config.search.weights == "shared"
    assert SearchSpace.load("mbv2").config.search.weights == "independent"
    shared, independent = SuperNet(space, 10), SuperNet(space, 10, weights="independent")
    n = lambda net: sum(p.numel() for p in net.weight_parameters())  # noqa: E731
    assert n(shared) < 0.5 * n(independent)


@pytest.mark.parametrize("weights", ["shared", "independent"])
def test_a_derived_path_with_inherited_weights_matches_its_ops_in_the_supernet(weights):
    space = SearchSpace.load("mbv2-tiny")
    torch.manual_seed(1)
    supernet = SuperNet(space, 10, weights=weights)
    arch = sample_archs(space, 1, seed=3)[0]
    net = DerivedNet(arch).train()
    copy_path_weights(net, arch, space, supernet, where="test")
    block = arch.blocks[0]
    x = torch.randn(4, block.in_ch, 16, 16)
    mixed = supernet.heads[block.block_id - 1][space.branch_index(block.block_id, 0)]
    assert torch.allclose(net.blocks[0].head(x), mixed.run(space.head_primitives.index(block.head_op), x), atol=1e-5)


def test_unknown_weight_mode_is_refused():
    from densenas.errors import DensenasError

    with pytest.raises(DensenasError, match="weights must be one of"):
        MixedOp(OPS, 8, 8, 1, weights="tied")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_sampled_route_through_the_supernet_is_the_derived_network_it_names(seed):
    """routes: sampled trains exactly what a derived network with inherited weights runs:
    the supernet on one route (no beta weighting) and the derived network of that route's
    choices compute the same logits."""
    from densenas.derive import Choice, choice_to_arch
    from densenas.search.sampler import PathSampler

    space = SearchSpace.load("mbv2-tiny")
    torch.manual_seed(seed)
    supernet = SuperNet(space, 10).train()
    sampler = PathSampler(seed)
    assert space.stack_skip_ids == (space.stack_primitives.index("skip_connect"),)
    path = sampler.sample(supernet.head_alphas, supernet.stack_alphas, 1, "uniform").skips_last(space.stack_skip_ids)
    route = sampler.route(space, supernet.branch_weights(), "uniform")
    assert route[0] == 0 and route[-1] == space.final.id and list(route) == sorted(route)
    prev = dict(zip(route[1:], route[:-1]))
    choice = Choice(route, {b: int(path.head[b - 1][space.branch_index(b, prev[b]), 0]) for b in route[1:-1]},
                    {b: tuple(int(i) for i in path.stack[b - 1][:, 0]) for b in route[1:-1]})
    arch = choice_to_arch(space, choice, num_classes=10)
    net = DerivedNet(arch).train()
    copy_path_weights(net, arch, space, supernet, where="test")
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(supernet(x, path.head, path.stack, route), net(x), atol=1e-5)
        # the dense supernet on the same ops is another function: every branch, weighted
        assert not torch.allclose(supernet(x, path.head, path.stack), net(x), atol=1e-3)
