"""Supernet and derived networks: forward passes, parameter layout, and a derived network
that has exactly the MACs and params of the same network written by hand in plain torch."""

import pytest
import torch
from torch import nn

from densenas.arch import parse_net_config
from densenas.counting import count_macs, count_params
from densenas.nets import DerivedNet, SuperNet
from densenas.space import SearchSpace
from tests.test_arch import MBV2, RESNET, TINY


def test_supernet_parameter_layout_follows_design_order():
    s = SearchSpace.load("mbv2")
    net = SuperNet(s)
    assert [p.numel() for p in net.betas] == [len(b.out_edges) for b in s.blocks[:-1]]
    assert [tuple(a.shape) for a in net.head_alphas] == [(len(b.in_edges), 6) for b in s.routing_blocks]
    assert [tuple(a.shape) for a in net.stack_alphas] == [(b.num_layers, 7) for b in s.routing_blocks]
    n_arch = sum(p.numel() for p in net.arch_parameters())
    assert n_arch + sum(p.numel() for p in net.weight_parameters()) == sum(p.numel() for p in net.parameters())


def test_supernet_forward_full_and_sampled():
    s = SearchSpace.load("mbv2-tiny")
    torch.manual_seed(0)
    net = SuperNet(s, num_classes=10, weights="independent")  # one module per candidate
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 10)
    head = [torch.randint(0, 4, (a.shape[0], 1)) for a in net.head_alphas]
    stack = [torch.randint(0, 5, (a.shape[0], 1)) for a in net.stack_alphas]
    y = net(x, head, stack)
    y.sum().backward()
    # only sampled ops get gradients
    blk = net.stacks[0][0]
    picked = stack[0][0, 0].item()
    for i, op in enumerate(blk.candidates):
        grads = [p.grad for p in op.parameters() if p.requires_grad]
        if grads:
            assert (any(g is not None for g in grads)) == (i == picked)
    assert net.betas[0].grad is not None


def test_supernet_resnet_space_forward_small_input():
    s = SearchSpace.load("resnet")
    net = SuperNet(s)
    head = [torch.zeros(a.shape[0], 1, dtype=torch.long) for a in net.head_alphas]
    stack = [torch.ones(a.shape[0], 1, dtype=torch.long) for a in net.stack_alphas]  # all skipped
    assert net(torch.randn(1, 3, 64, 64), head, stack).shape == (1, 100)


@pytest.mark.parametrize("space,cfg", [("mbv2", MBV2), ("resnet", RESNET), ("mbv2-tiny", TINY)])
def test_derived_forward(space, cfg):
    arch = parse_net_config(cfg, SearchSpace.load(space))
    net = DerivedNet(arch).eval()
    size = 64 if space != "mbv2-tiny" else 32
    assert net(torch.randn(2, 3, size, size)).shape == (2, arch.num_classes)


# --- a hand-written reference in plain torch -------------------------------------------

def _cbr(cin, cout, k, s, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6())
    return layers


class _InvRes(nn.Module):
    def __init__(self, cin, cout, k, s, t):
        super().__init__()
        mid = cin * t
        layers = (_cbr(cin, mid, 1, 1) if t > 1 else []) + _cbr(mid, mid, k, s, groups=mid) + _cbr(mid, cout, 1, 1, act=False)
        self.body = nn.Sequential(*layers)
        self.res = s == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.res else self.body(x)


class _Basic(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                  nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.down = (nn.Sequential(nn.Conv2d(cin, cout, 1, s, bias=False), nn.BatchNorm2d(cout))
                     if s != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return torch.relu(self.body(x) + self.down(x))


def _hand_written_tiny():
    """The TINY net_config, typed out layer by layer."""
    spec = [(16, 24, 3, 2, 3), (24, 24, 3, 1, 3), (24, 32, 3, 1, 6), (32, 48, 5, 2, 3), (48, 48, 3, 1, 3),
            (48, 80, 3, 2, 6), (80, 96, 3, 1, 6)]
    return nn.Sequential(*_cbr(3, 16, 3, 2), _InvRes(16, 16, 3, 1, 1), *[_InvRes(*a) for a in spec],
                         *_cbr(96, 256, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))


def _hand_written_resnet():
    spec = [(32, 48, 2), (48, 72, 2), (72, 72, 1), (72, 128, 2), (128, 128, 1), (128, 128, 1), (128, 208, 1),
            (208, 256, 2), (256, 256, 1), (256, 512, 1)]
    stem = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU()]
    return nn.Sequential(*stem, *[_Basic(*a) for a in spec], nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 100))


@pytest.mark.parametrize("space,cfg,ref,size", [
    ("mbv2-tiny", TINY, _hand_written_tiny, 32),
    ("resnet", RESNET, _hand_written_resnet, 224),
])
def test_derived_matches_hand_written_reference(space, cfg, ref, size):
    arch = parse_net_config(cfg, SearchSpace.load(space))
    ours, theirs = DerivedNet(arch), ref()
    assert count_params(ours) == count_params(theirs)
    shape = (1, 3, size, size)
    assert count_macs(ours, shape) == count_macs(theirs, shape)


def test_torchvision_mobilenet_v2_block_counts_like_ours():
    """A torchvision inverted-residual block and ours have identical params and MACs."""
    from torchvision.models.mobilenetv2 import InvertedResidual

    from densenas.ops import build_op

    for cin, cout, s, t in [(16, 24, 2, 6), (24, 24, 1, 6), (32, 64, 2, 6), (16, 16, 1, 1)]:
        tv = InvertedResidual(cin, cout, s, t)
        mine = build_op(f"mbconv_k3_t{t}", cin, cout, s)
        assert count_params(tv) == count_params(mine)
        assert count_macs(tv, (1, cin, 28, 28)) == count_macs(mine, (1, cin, 28, 28))
