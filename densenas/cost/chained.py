"""Chained cost estimation (the paper's Sec. 3.3), differentiable in alpha and beta.

Going from the last block to the first,
    C_b = S_b + sum_{e=(b->n)} beta_b[e] * (H_n[b] + C_n),   C_final = 0
with S_b the alpha-weighted cost of block b's stacked layers and H_n[b] the
alpha-weighted cost of block n's head branch from b. The network cost is
stem + C_0 + classifier. beta is softmaxed at the space's temperature, alpha at 1,
as in the paper's code; with sampled indices only the sampled ops take part,
renormalised, exactly as the data path of an architecture step.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from densenas.cost.tables import CostTables
from densenas.space import SearchSpace


def _mixed(alpha: torch.Tensor, table: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
    """Alpha-weighted cost of each row (branch or layer) of a mixed-op table."""
    table = table.to(alpha.dtype)
    if index is None:
        return (F.softmax(alpha, dim=-1) * table).sum(-1)
    return (F.softmax(alpha.gather(-1, index), dim=-1) * table.gather(-1, index)).sum(-1)


def chained_cost_breakdown(space: SearchSpace, tables: CostTables, betas: Sequence[torch.Tensor],
                           head_alphas: Sequence[torch.Tensor], stack_alphas: Sequence[torch.Tensor],
                           head_index: Sequence[torch.Tensor] | None = None,
                           stack_index: Sequence[torch.Tensor] | None = None) -> dict:
    """The chained cost and the per-block expected costs C_b (block 0 first)."""
    temp = space.softmax_temp
    n_blocks = len(space.blocks)
    dtype = torch.float64
    weights = [F.softmax(b.to(dtype) / temp, dim=-1) for b in betas]
    head_costs, stack_costs = [], []
    for n in range(len(space.routing_blocks)):
        hi = None if head_index is None else head_index[n]
        si = None if stack_index is None else stack_index[n]
        head_costs.append(_mixed(head_alphas[n].to(dtype), tables.head[n], hi))
        s = stack_alphas[n]
        stack_costs.append(_mixed(s.to(dtype), tables.stack[n], si).sum() if s.shape[0] else s.new_zeros((), dtype=dtype))
    final = space.final
    chained: list[torch.Tensor | None] = [None] * n_blocks
    chained[final.id] = weights[0].new_zeros(())
    for b in reversed(space.blocks[:-1]):
        c = stack_costs[b.id - 1] if b.id > 0 else weights[0].new_zeros(())
        for e, dst in enumerate(b.out_edges):
            j = space.blocks[dst].in_edges.index(b.id)
            h = tables.final[j].to(dtype) if dst == final.id else head_costs[dst - 1][j]
            c = c + weights[b.id][e] * (h + chained[dst])
        chained[b.id] = c
    sum_ops = tables.stem + chained[0] + tables.classifier
    return {"total": tables.total(sum_ops), "per_block": chained[:-1], "sum_ops": sum_ops}


def chained_cost(space: SearchSpace, tables: CostTables, betas, head_alphas, stack_alphas,
                 head_index=None, stack_index=None) -> torch.Tensor:
    """The expected network cost (a scalar tensor with gradients to alpha and beta)."""
    return chained_cost_breakdown(space, tables, betas, head_alphas, stack_alphas, head_index, stack_index)["total"]
