"""The architecture step's loss: cross-entropy plus the cost term.

Without a target, the paper's term: ``sub_loss_factor * log(C) / log(log_base)``, with C
the chained cost of the step's sampled path. It only ever pushes the cost down, at a
rate (in log space) that does not depend on how large the cost is.

With a target T (``--target-latency``) the term is the RMS relative deviation from T of
the cost of the networks the architecture distribution describes:

    sub_loss_factor * sqrt(E[(C/T - 1)^2]) / log(log_base)
      = sub_loss_factor * sqrt((E[C]/T - 1)^2 + Var[C]/T^2) / log(log_base)

The first part alone is the symmetric |E[C]/T - 1|: it pushes the expected cost down
above the target and up below it, but it lands only the *average* on T. The derived
network is the most probable one, and when every op distribution has been nudged
toward cheap ops it is far cheaper than the average (the relaxation gap the per-epoch
summary shows). The variance part makes the distribution commit to networks whose cost
is near T (it is zero only when every probable network costs the same), so the derived
network lands on the target too. Both moments are chained exactly like the expected
cost (beta: a distribution over a block's outgoing edges; alpha: independent rows).

C is one number per step: not summed or averaged over the batch's samples, so the cost
term weighs the same against the (batch-mean) cross-entropy at any batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from densenas.cost.tables import CostTables
from densenas.space import SearchSpace


TARGET_BAND = math.log(1.05)  # within 5% of the target the push fades out and commitment takes over


@dataclass(frozen=True)
class CostObjective:
    factor: float
    log_base: float
    target: float | None = None

    def term(self, cost: torch.Tensor, derived_cost: float | None = None,
             derived_log_prob: torch.Tensor | None = None) -> torch.Tensor:
        """The cost term for one step's (scalar) chained cost; with a target it needs the
        current derived network's cost and (differentiable) log-probability too."""
        scale = self.factor / math.log(self.log_base)
        log_cost = torch.log(cost)
        if self.target is None:
            return scale * log_cost
        if derived_cost is None or derived_log_prob is None:
            raise ValueError("a target cost needs the derived network's cost and log-probability")
        gap = math.log(derived_cost / self.target)
        pull = max(-1.0, min(1.0, gap / TARGET_BAND))
        steer = pull * (log_cost - log_cost.detach()) + abs(gap)
        commit = (1.0 - abs(pull)) * (derived_log_prob.detach() - derived_log_prob)
        return scale * (steer + commit)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, cost: torch.Tensor,
             derived_cost: float | None = None, derived_log_prob: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss, cost term): cross-entropy (batch mean) plus the cost term."""
        term = self.term(cost, derived_cost, derived_log_prob).to(logits.dtype)
        return F.cross_entropy(logits, target) + term, term


def choice_log_prob(space: SearchSpace, betas: Sequence[torch.Tensor], head_alphas: Sequence[torch.Tensor],
                    stack_alphas: Sequence[torch.Tensor], choice) -> torch.Tensor:
    """log P of one derived network (a ``densenas.derive.Choice``), differentiable in the
    parameters: softmax(beta) along its route (temperature 1, as derivation), softmax(alpha)
    of its head op on the branch it enters by and of every layer's op."""
    total = betas[0].new_zeros((), dtype=torch.float64)
    for src, dst in zip(choice.route, choice.route[1:]):
        total = total + F.log_softmax(betas[src].double(), -1)[space.blocks[src].out_edges.index(dst)]
        if dst != space.final.id:
            n = dst - 1
            total = total + F.log_softmax(head_alphas[n][space.branch_index(dst, src)].double(), -1)[choice.head[dst]]
            for layer, op in enumerate(choice.stack[dst]):
                total = total + F.log_softmax(stack_alphas[n][layer].double(), -1)[op]
    return total


def _row_moments(alpha: torch.Tensor, table: torch.Tensor, index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and second moment of each row's cost (over its sampled ops, renormalised)."""
    table = table.to(alpha.dtype)
    if index is not None:
        alpha, table = alpha.gather(-1, index), table.gather(-1, index)
    p = F.softmax(alpha, dim=-1)
    return (p * table).sum(-1), (p * table * table).sum(-1)


def chained_moments(space: SearchSpace, tables: CostTables, betas: Sequence[torch.Tensor],
                    head_alphas: Sequence[torch.Tensor], stack_alphas: Sequence[torch.Tensor],
                    head_index: Sequence[torch.Tensor] | None = None,
                    stack_index: Sequence[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of the network cost when the route is drawn by softmax(beta)
    (a Markov chain over the blocks) and each mixed op independently by softmax(alpha).
    The mean is ``chained_cost``; the variance comes from the second moments chained the
    same way, from the last block to the first."""
    dtype = torch.float64
    temp = space.softmax_temp
    weights = [F.softmax(b.to(dtype) / temp, dim=-1) for b in betas]
    zero = weights[0].new_zeros(())
    head_m, stack_m = [], []
    for n in range(len(space.routing_blocks)):
        hi = None if head_index is None else head_index[n]
        si = None if stack_index is None else stack_index[n]
        head_m.append(_row_moments(head_alphas[n].to(dtype), tables.head[n], hi))
        if stack_alphas[n].shape[0]:
            m1, m2 = _row_moments(stack_alphas[n].to(dtype), tables.stack[n], si)
            stack_m.append((m1.sum(), (m2 - m1 * m1).sum()))  # layers are independent
        else:
            stack_m.append((zero, zero))
    final = space.final
    m1: list[torch.Tensor] = [zero] * len(space.blocks)
    m2: list[torch.Tensor] = [zero] * len(space.blocks)
    for b in reversed(space.blocks[:-1]):
        s_mean, s_var = stack_m[b.id - 1] if b.id > 0 else (zero, zero)
        x1, x2 = zero, zero  # moments of what follows the block's stacked layers
        for e, dst in enumerate(b.out_edges):
            j = space.blocks[dst].in_edges.index(b.id)
            if dst == final.id:
                h1 = tables.final[j].to(dtype)
                h2 = h1 * h1
            else:
                h1, h2 = head_m[dst - 1][0][j], head_m[dst - 1][1][j]
            w = weights[b.id][e]
            x1 = x1 + w * (h1 + m1[dst])
            x2 = x2 + w * (h2 + 2 * h1 * m1[dst] + m2[dst])
        m1[b.id] = s_mean + x1
        m2[b.id] = s_var + s_mean * s_mean + 2 * s_mean * x1 + x2
    k = float(tables.stem) + float(tables.classifier)
    mean_ops = k + m1[0]
    var_ops = m2[0] - m1[0] * m1[0]
    return tables.total(mean_ops), tables.scale**2 * var_ops
