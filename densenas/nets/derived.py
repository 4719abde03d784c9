"""The derived (one-path) network built from an ``Arch``."""

from __future__ import annotations

import torch
from torch import nn

from densenas.arch import Arch
from densenas.nets.init import init_weights, set_bn
from densenas.ops import build_layers, build_op


class RoutingBlock(nn.Module):
    """A derived block: the head op (width and stride change) then the stacked ops."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, head_op: str, stack_ops: tuple[str, ...]):
        super().__init__()
        self.head = build_op(head_op, in_ch, out_ch, stride)
        self.stack = nn.Sequential(*(build_op(op, out_ch, out_ch, 1) for op in stack_ops))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stack(self.head(x))


class DerivedNet(nn.Module):
    def __init__(self, arch: Arch, *, bn_momentum: float = 0.1, bn_eps: float = 1e-3):
        super().__init__()
        self.arch = arch
        self.stem = build_layers(arch.stem_layers())
        self.blocks = nn.Sequential(
            *(RoutingBlock(b.in_ch, b.out_ch, b.stride, b.head_op, b.stack_ops) for b in arch.blocks)
        )
        self.final_conv = (
            build_op("conv1_1", arch.final_conv[0], arch.final_conv[1], 1) if arch.final_conv else nn.Identity()
        )
        self.classifier = build_op("classifier", arch.feature_dim, arch.num_classes, 1)
        init_weights(self)
        set_bn(self, bn_momentum, bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.final_conv(self.blocks(self.stem(x))))

    def layer_modules(self) -> list[nn.Module]:
        """The modules in the same order as ``Arch.layers()`` (for per-layer timing)."""
        mods: list[nn.Module] = list(self.stem)
        for blk in self.blocks:
            mods.append(blk.head)
            mods.extend(blk.stack)
        if not isinstance(self.final_conv, nn.Identity):
            mods.append(self.final_conv)
        mods.append(self.classifier)
        return mods


def build_derived(arch: Arch, **kwargs) -> DerivedNet:
    return DerivedNet(arch, **kwargs)
