"""Multiply-adds and parameter counts of any module, from torch's own FLOP counter."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass (conv and linear; FLOPs = 2 x MACs for those)."""
    was_training = module.training
    module.eval()
    try:
        param = next(module.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(input_shape, device=device)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            module(x)
        return counter.get_total_flops() // 2
    finally:
        module.train(was_training)
