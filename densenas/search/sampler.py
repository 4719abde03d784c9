"""Which candidate ops run in a search step.

A weight step runs one op per mixed op, an architecture step two (the paper's
``sample_branch``): drawn without replacement, uniformly during the warm-up and from
softmax(alpha) after it, then sorted. Where the space asks for sampled routes, a weight
step also runs one route of blocks, drawn edge by edge the same way from softmax(beta).
Draws come from a dedicated CPU generator reseeded from (seed, epoch, phase, step) before
every step, so the path depends on nothing but those numbers and the current alphas: a
resumed search and every rank of a distributed one sample exactly the same path,
whatever the device.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
import torch.nn.functional as F

from densenas.errors import DensenasError

if TYPE_CHECKING:
    from densenas.space import SearchSpace

POLICIES = ("prob", "uniform")


class NonFiniteError(DensenasError):
    """A loss or the architecture parameters stopped being finite numbers."""


def step_seed(seed: int, epoch: int, phase: str, step: int) -> int:
    """A 63-bit seed fixed by the step's coordinates (stable across runs and platforms)."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{phase}:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & 0x7FFF_FFFF_FFFF_FFFF


@dataclass
class SampledPath:
    """Sampled op ids per routing block: ``head[n]`` is (branches, k), ``stack[n]`` (layers, k)."""

    head: list[torch.Tensor]
    stack: list[torch.Tensor]

    def to(self, device: torch.device | str) -> "SampledPath":
        return SampledPath([t.to(device) for t in self.head], [t.to(device) for t in self.stack])

    def skips_last(self, skips: Sequence[int]) -> "SampledPath":
        """The same ops with each block's skip layers (op ids ``skips``) moved after its
        other layers (one op per layer): the layout of a derived network, which drops its
        skips and takes the weights of the first layers, so a route trains the layers it
        will inherit."""
        if any(t.shape[1] != 1 for t in self.stack):
            raise ValueError("skips_last needs one sampled op per layer")
        if not skips:
            return self
        stack = []
        for t in self.stack:
            ids = t[:, 0]
            is_skip = torch.isin(ids, torch.tensor(list(skips), device=ids.device))
            stack.append(torch.cat([ids[~is_skip], ids[is_skip]])[:, None])
        return SampledPath(self.head, stack)


class PathSampler:
    """Draws sampled paths from a generator that is reseeded for every step."""

    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed)

    def reseed(self, epoch: int, phase: str, step: int) -> None:
        self.generator.manual_seed(step_seed(self.seed, epoch, phase, step))

    def sample(self, head_alphas: Sequence[torch.Tensor], stack_alphas: Sequence[torch.Tensor],
               k: int, policy: str, *, where: str = "") -> SampledPath:
        """``k`` sorted op ids per row of every alpha tensor (all ops when ``k`` >= their number)."""
        if policy not in POLICIES:
            raise DensenasError(f"unknown sample policy {policy!r}; choose one of {', '.join(POLICIES)}")
        return SampledPath([self._rows(a, k, policy, where) for a in head_alphas],
                           [self._rows(a, k, policy, where) for a in stack_alphas])

    def route(self, space: "SearchSpace", branch_weights: Sequence[torch.Tensor], policy: str) -> tuple[int, ...]:
        """One route of blocks from the stem to the final block: from each block the next
        drawn over its outgoing edges, uniformly or by ``branch_weights`` (softmax(beta))."""
        if policy not in POLICIES:
            raise DensenasError(f"unknown sample policy {policy!r}; choose one of {', '.join(POLICIES)}")
        route = [0]
        while route[-1] != space.final.id:
            edges = space.blocks[route[-1]].out_edges
            probs = (torch.ones(len(edges), dtype=torch.float64) if policy == "uniform"
                     else branch_weights[route[-1]].detach().to("cpu", torch.float64))
            route.append(edges[int(torch.multinomial(probs, 1, generator=self.generator))])
        return tuple(route)

    def _rows(self, alpha: torch.Tensor, k: int, policy: str, where: str) -> torch.Tensor:
        rows, n = alpha.shape
        if k >= n:
            return torch.arange(n).repeat(rows, 1)
        if rows == 0:
            return torch.zeros(0, k, dtype=torch.long)
        logits = alpha.detach().to("cpu", torch.float64)
        if not torch.isfinite(logits).all():
            raise NonFiniteError(f"architecture parameters are no longer finite{where}")
        probs = torch.ones_like(logits) if policy == "uniform" else F.softmax(logits, dim=-1)
        picked = torch.multinomial(probs, k, replacement=False, generator=self.generator)
        return picked.sort(dim=-1).values

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
