"""The derived (one-path) network built from an ``Arch``'s layer plan."""

from __future__ import annotations

import torch
from torch import nn

from densenas.arch import Arch
from densenas.nets.init import init_weights, set_bn
from densenas.ops import build_layer, build_layers
from densenas.signature import OpSignature


class RoutingBlock(nn.Module):
    """A derived block: the head op (width and stride change) then the stacked ops."""

    def __init__(self, head: OpSignature, stack: list[OpSignature]):
        super().__init__()
        self.head = build_layer(head)
        self.stack = build_layers(stack)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stack(self.head(x))


class DerivedNet(nn.Module):
    def __init__(self, arch: Arch, *, bn_momentum: float = 0.1, bn_eps: float = 1e-3):
        super().__init__()
        self.arch = arch
        plan = arch.layers()

        def layers(role: str, block: int | None = None) -> list[OpSignature]:
            return [sig for r, b, sig in plan if r == role and (block is None or b == block)]

        self.stem = build_layers(layers("stem"))
        self.blocks = nn.Sequential(
            *(RoutingBlock(layers("head", i)[0], layers("stack", i)) for i in range(len(arch.blocks)))
        )
        final = layers("final")
        self.final_conv = build_layer(final[0]) if final else nn.Identity()
        self.classifier = build_layer(layers("classifier")[0])
        init_weights(self)
        set_bn(self, bn_momentum, bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.final_conv(self.blocks(self.stem(x))))

    def layer_modules(self) -> list[nn.Module]:
        """The modules in the same order as ``Arch.layers()`` (for per-layer timing)."""
        blocks = [m for blk in self.blocks for m in (blk.head, *blk.stack)]
        final = [] if isinstance(self.final_conv, nn.Identity) else [self.final_conv]
        return [*self.stem, *blocks, *final, self.classifier]


def build_derived(arch: Arch, **kwargs) -> DerivedNet:
    return DerivedNet(arch, **kwargs)
