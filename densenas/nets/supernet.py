"""The supernet: every block, every edge, every candidate op, with the architecture
parameters (beta per block over outgoing edges, head alpha per incoming branch, stack
alpha per layer) in the order DESIGN.md fixes.

Modules are built once; a step picks which ops run through index tensors, so nothing
is rebuilt per step (the paper's code rebuilt a dropped network every step).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from densenas.errors import DensenasError
from densenas.nets.init import init_weights, set_bn
from densenas.ops import SharedMBConv, build_layer, build_layers, build_op
from densenas.signature import OpSpec
from densenas.space import SearchSpace

# Per block: one LongTensor of shape (branches or layers, k) of sampled op indices.
OpIndices = Sequence[torch.Tensor]


WEIGHT_MODES = ("independent", "shared")


class MixedOp(nn.Module):
    """Candidate ops on one edge or layer; runs only the sampled ones, weighted by the
    softmax of their alphas (temperature 1, as the paper's code).

    ``weights="independent"`` gives every candidate its own module (the paper's);
    ``"shared"`` makes the MBConv candidates slices of one ``SharedMBConv`` and leaves
    the others (skip, ResNet blocks) as they are.
    """

    def __init__(self, ops: Sequence[OpSpec], c_in: int, c_out: int, stride: int, *, weights: str = "independent"):
        super().__init__()
        if weights not in WEIGHT_MODES:
            raise DensenasError(f"weights must be one of {', '.join(WEIGHT_MODES)}, got {weights!r}")
        specs = [OpSpec(op) for op in ops]
        mb = [i for i, s in enumerate(specs) if s.mbconv] if weights == "shared" else []
        self.shared = SharedMBConv([specs[i] for i in mb], c_in, c_out, stride, affine=False) if mb else None
        # candidate i -> ("shared", slice j) or ("own", index into self.candidates)
        self._route: list[tuple[bool, int]] = []
        own = []
        for i, spec in enumerate(specs):
            if i in mb:
                self._route.append((True, mb.index(i)))
            else:
                self._route.append((False, len(own)))
                own.append(build_op(spec, c_in, c_out, stride, affine=False))
        self.candidates = nn.ModuleList(own)

    def run(self, i: int, x: torch.Tensor) -> torch.Tensor:
        shared, j = self._route[i]
        return self.shared.run(j, x) if shared else self.candidates[j](x)

    def candidate(self, i: int) -> nn.Module:
        """Candidate ``i`` as a module of its own (for shared weights, a copy of its slices)."""
        shared, j = self._route[i]
        return self.shared.standalone(j) if shared else self.candidates[j]

    def forward(self, x: torch.Tensor, alpha: torch.Tensor, index: torch.Tensor,
                picked: Sequence[int] | None = None) -> torch.Tensor:
        """``picked``: ``index`` as host integers, when the caller has them (no device sync)."""
        picked = index.tolist() if picked is None else picked
        if len(picked) == 1 and not alpha.requires_grad:
            # softmax over one op is exactly 1: the product would change nothing
            return self.run(picked[0], x)
        weights = F.softmax(alpha[index], dim=-1)
        out = None
        for w, i in zip(weights, picked):
            y = w * self.run(i, x)
            out = y if out is None else out + y
        return out


class SuperNet(nn.Module):
    def __init__(self, space: SearchSpace, num_classes: int | None = None, *,
                 bn_momentum: float | None = None, bn_eps: float | None = None, init_scale: float = 1e-3,
                 weights: str | None = None):
        super().__init__()
        cfg = space.config
        self.weights = weights or cfg.search.weights
        self.space = space
        self.num_classes = num_classes or cfg.num_classes
        self.temp = cfg.softmax_temp
        self.stem = build_layers(space.stem_signatures(), affine=False)
        blocks = space.blocks
        self.heads = nn.ModuleList()
        self.stacks = nn.ModuleList()
        for b in space.routing_blocks:
            self.heads.append(nn.ModuleList(
                MixedOp(space.head_primitives, blocks[src].ch, b.ch, stride, weights=self.weights)
                for src, stride in zip(b.in_edges, b.in_strides)
            ))
            self.stacks.append(nn.ModuleList(
                MixedOp(space.stack_primitives, b.ch, b.ch, 1, weights=self.weights) for _ in range(b.num_layers)
            ))
        self.final = nn.ModuleList(build_layer(space.final_signature(src), affine=False) for src in space.final.in_edges)
        self.classifier = build_layer(space.classifier_signature(self.num_classes))

        n_head, n_stack = len(space.head_primitives), len(space.stack_primitives)
        self.betas = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(len(b.out_edges))) for b in blocks[:-1]
        )
        self.head_alphas = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(len(b.in_edges), n_head)) for b in space.routing_blocks
        )
        self.stack_alphas = nn.ParameterList(
            nn.Parameter(init_scale * torch.randn(b.num_layers, n_stack)) for b in space.routing_blocks
        )
        init_weights(self)
        set_bn(self, bn_momentum or cfg.search.bn_momentum, bn_eps or cfg.search.bn_eps)

    # -- parameters ------------------------------------------------------------------

    def arch_parameters(self) -> list[nn.Parameter]:
        return [*self.betas, *self.head_alphas, *self.stack_alphas]

    def alpha_parameters(self) -> list[nn.Parameter]:
        return [*self.head_alphas, *self.stack_alphas]

    def beta_parameters(self) -> list[nn.Parameter]:
        return list(self.betas)

    def weight_parameters(self) -> list[nn.Parameter]:
        arch = {id(p) for p in self.arch_parameters()}
        return [p for p in self.parameters() if id(p) not in arch]

    def branch_weights(self) -> list[torch.Tensor]:
        """softmax(beta / softmax_temp) per block, over its outgoing edges."""
        return [F.softmax(b / self.temp, dim=-1) for b in self.betas]

    def all_indices(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Indices selecting every candidate op (the full relaxation)."""
        dev = self.betas[0].device
        head = [torch.arange(a.shape[1], device=dev).repeat(a.shape[0], 1) for a in self.head_alphas]
        stack = [torch.arange(a.shape[1], device=dev).repeat(a.shape[0], 1) for a in self.stack_alphas]
        return head, stack

    # -- forward -----------------------------------------------------------------------

    def forward(self, x: torch.Tensor, head_index: OpIndices | None = None,
                stack_index: OpIndices | None = None, route: Sequence[int] | None = None) -> torch.Tensor:
        """Logits of the supernet running the sampled ops: every block and branch, each
        branch weighted by its beta (the relaxation the architecture step differentiates),
        or, given ``route`` (block ids from the stem to the final block), only the blocks
        and edges of that route, unweighted, exactly as a derived network runs them."""
        if head_index is None or stack_index is None:
            head_index, stack_index = self.all_indices()
        space = self.space
        weights = None if route is not None else self.branch_weights()
        previous = None if route is None else dict(zip(route[1:], route[:-1]))
        # every index to host integers before the first kernel: no device sync mid-forward
        head_ids = [t.tolist() for t in head_index]
        stack_ids = [t.tolist() for t in stack_index]
        outs: list[torch.Tensor | None] = [self.stem(x)]
        for n, b in enumerate(space.routing_blocks):
            if previous is not None and b.id not in previous:
                outs.append(None)
                continue
            y = None
            for j, src in enumerate(b.in_edges):
                if previous is not None and src != previous[b.id]:
                    continue
                h = self.heads[n][j](outs[src], self.head_alphas[n][j], head_index[n][j], head_ids[n][j])
                if weights is not None:
                    h = weights[src][space.blocks[src].out_edges.index(b.id)] * h
                y = h if y is None else y + h
            for layer, mixed in enumerate(self.stacks[n]):
                y = mixed(y, self.stack_alphas[n][layer], stack_index[n][layer], stack_ids[n][layer])
            outs.append(y)
        final = space.final
        z = None
        for j, src in enumerate(final.in_edges):
            if previous is not None and src != previous[final.id]:
                continue
            h = self.final[j](outs[src])
            if weights is not None:
                h = weights[src][space.blocks[src].out_edges.index(final.id)] * h
            z = h if z is None else z + h
        return self.classifier(z)
