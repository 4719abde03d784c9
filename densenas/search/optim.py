"""The two optimizers of a search, as the paper sets them up, and the alpha rescaling.

Weights: SGD with momentum and weight decay, the learning rate annealed by a cosine from
``init_lr`` to ``min_lr`` over every weight step of the search. Architecture: Adam with
betas (0.5, 0.999) and weight decay, one group for the alphas (``alpha_lr``) and one for
the betas (``beta_lr``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from densenas.space.config import SearchSettings


def weight_optimizer(params: Sequence[nn.Parameter], cfg: SearchSettings) -> torch.optim.SGD:
    w = cfg.weight
    return torch.optim.SGD(list(params), lr=w.init_lr, momentum=w.momentum, weight_decay=w.weight_decay)


def arch_optimizer(alphas: Sequence[nn.Parameter], betas: Sequence[nn.Parameter],
                   cfg: SearchSettings) -> torch.optim.Adam:
    a = cfg.arch
    return torch.optim.Adam(
        [{"params": list(alphas), "lr": a.alpha_lr}, {"params": list(betas), "lr": a.beta_lr}],
        betas=(0.5, 0.999),
        weight_decay=a.weight_decay,
    )


def cosine_schedule(optimizer: torch.optim.Optimizer, total_steps: int,
                    min_lr: float) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """Stepped once per weight step (the paper's per-iteration cosine)."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps), eta_min=min_lr)


@torch.no_grad()
def rescale_sampled_(alphas: Sequence[torch.Tensor], old_logits: Sequence[torch.Tensor],
                     indices: Sequence[torch.Tensor]) -> None:
    """After an architecture step on sampled ops, shift each row's sampled logits so that
    their total probability mass is what it was before the step: the unsampled ops keep
    their probability, the step only redistributes mass among the sampled ones.

    For each row: ``alpha[idx] += log(sum exp(old[idx]) / sum exp(new[idx]))``.
    """
    for alpha, old, idx in zip(alphas, old_logits, indices):
        if alpha.shape[0] == 0:
            continue
        idx = idx.to(alpha.device)
        new = alpha.gather(-1, idx)
        shift = torch.logsumexp(old.to(alpha.dtype), dim=-1, keepdim=True) - torch.logsumexp(new, dim=-1, keepdim=True)
        alpha.scatter_add_(-1, idx, shift.expand_as(new).contiguous())
