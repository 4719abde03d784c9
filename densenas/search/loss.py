"""The architecture step's loss: cross-entropy plus the cost term.

Without a target, the paper's term: ``sub_loss_factor * log(C) / log(log_base)``, with C
the chained cost of the step's sampled path. It only ever pushes the cost down, at a
rate (in log space) that does not depend on how large the cost is.

With a target T (``--target-latency``) the term steers the network derivation gives now
(Viterbi route, argmax ops; cost C_d from the same tables), not the average:

- outside 5% of T, the gradient is the paper's ``d log(C)`` signed by the side of T that
  C_d is on: while the derived network is slower than T the step pushes the chained
  cost down exactly as the paper's term does, while it is faster it pushes it up;
- inside the band that push fades linearly to zero and a commitment term takes over:
  ``-log P(derived network)``, which makes the distribution settle on the network that
  meets the target instead of drifting off it;
- its value is ``|log(C_d / T)|`` (times the factor), the distance the user cares about.

The plain symmetric ``|log(C / T)|`` lands only the chained cost, an average over
still-undecided op distributions, on T. The derived network is the most probable one,
and once every distribution has been nudged toward cheap ops it is far cheaper than
that average (the relaxation gap the per-epoch summary prints), so it misses the target.

C is one number per step: not summed or averaged over the batch's samples, so the cost
term weighs the same against the (batch-mean) cross-entropy at any batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

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
