"""Weight initialisation and BN settings shared by the supernet and derived networks."""

from __future__ import annotations

import math

from torch import nn


def init_weights(model: nn.Module, mode: str = "he_fout") -> None:
    """The paper's initialisation: He fan-out normal for convs (divided by groups),
    BN weight 1 / bias 0, linear bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            n = k * (m.out_channels if mode == "he_fout" else m.in_channels) / m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) and m.affine:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def set_bn(model: nn.Module, momentum: float, eps: float) -> None:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum
            m.eps = eps
