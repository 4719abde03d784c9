"""The search space as a pure graph: blocks, forward edges by the paper's rule, head
branches, stacked layers, and every op instance a network of the space may contain.

No torch here: building and querying a space is instant and easy to test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Iterator

from densenas.errors import DensenasError
from densenas.signature import OpSignature, OpSpec, classifier_layer, final_layer, stem_layers
from densenas.space.config import SpaceConfig, load_space_config


@dataclass(frozen=True)
class Block:
    """One candidate block. Block 0 is the stem's output; the last block is the final
    1x1 conv (``is_final``), a virtual block with no searchable ops."""

    id: int
    ch: int
    fm: int
    stage: int
    num_layers: int
    out_edges: tuple[int, ...]  # destination ids, nearest first
    out_strides: tuple[int, ...]
    in_edges: tuple[int, ...]  # source ids, nearest first
    in_strides: tuple[int, ...]
    is_final: bool = False


@dataclass(frozen=True)
class OpInstance:
    """One place an op can sit in the supernet, with the signature it is measured at."""

    role: str  # "stem", "head", "stack", "final", "classifier"
    block: int  # block id (destination block for head and final branches)
    index: int  # head: incoming branch index; stack: layer index; else position
    signature: OpSignature


class SearchSpace:
    """A validated search space; ``from_config`` applies the paper's connection rule."""

    def __init__(self, config: SpaceConfig, source: str = "<space>") -> None:
        self.config = config
        self.source = source
        self.blocks: tuple[Block, ...] = _build_blocks(config, source)
        self.head_primitives: list[OpSpec] = list(map(OpSpec, config.primitives.head))
        self.stack_primitives: list[OpSpec] = list(map(OpSpec, config.primitives.stack))

    @classmethod
    def load(cls, name_or_path: str) -> "SearchSpace":
        from densenas.space.config import resolve_space_path

        return cls(load_space_config(name_or_path), source=str(resolve_space_path(name_or_path)))

    # -- structure ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def routing_blocks(self) -> tuple[Block, ...]:
        """Blocks 1..n-1: those with a searchable head layer and stacked layers."""
        return self.blocks[1:-1]

    @property
    def final(self) -> Block:
        return self.blocks[-1]

    @property
    def softmax_temp(self) -> float:
        return self.config.softmax_temp

    @property
    def input_size(self) -> int:
        return self.config.input_size

    def branch_index(self, dst: int, src: int) -> int:
        """Position of the edge src->dst among dst's incoming branches."""
        try:
            return self.blocks[dst].in_edges.index(src)
        except ValueError:
            raise DensenasError(f"space {self.name}: no edge from block {src} to block {dst}") from None

    def edge_stride(self, src: int, dst: int) -> int:
        b = self.blocks[src]
        if dst not in b.out_edges:
            raise DensenasError(f"space {self.name}: no edge from block {src} to block {dst}")
        return b.out_strides[b.out_edges.index(dst)]

    @cached_property
    def stack_skip_ids(self) -> tuple[int, ...]:
        """Indices of the skip ops among the stack primitives (a layer that chose one is
        dropped from a derived network)."""
        return tuple(i for i, op in enumerate(self.stack_primitives) if op.skip)

    @cached_property
    def num_paths(self) -> int:
        """Number of block routes from the stem to the final conv."""
        count = [0] * len(self.blocks)
        count[0] = 1
        for b in self.blocks:
            for dst in b.out_edges:
                count[dst] += count[b.id]
        return count[-1]

    @cached_property
    def log10_num_archs(self) -> float:
        """log10 of the number of distinct derived networks (routes x op choices)."""
        n_head, n_stack = len(self.head_primitives), len(self.stack_primitives)
        ways = [0] * len(self.blocks)  # exact integers: the paper spaces exceed 1e30
        ways[0] = 1
        for b in self.blocks[1:]:
            per_block = 1 if b.is_final else n_head * n_stack**b.num_layers
            ways[b.id] = per_block * sum(ways[src] for src in b.in_edges)
        return math.log10(ways[-1])

    # -- op instances --------------------------------------------------------------

    def stem_signatures(self) -> list[OpSignature]:
        c = self.config
        return stem_layers(c.stem, c.init_dim, c.head_dim, c.input_size)

    def head_signature(self, dst: int, src: int, op: OpSpec) -> OpSignature:
        s, d = self.blocks[src], self.blocks[dst]
        return OpSignature(op, s.ch, d.ch, self.edge_stride(src, dst), s.fm, s.fm)

    def stack_signature(self, block: int, op: OpSpec) -> OpSignature:
        b = self.blocks[block]
        return OpSignature(op, b.ch, b.ch, 1, b.fm, b.fm)

    def final_signature(self, src: int) -> OpSignature:
        s = self.blocks[src]
        return final_layer(s.ch, self.config.last_dim, s.fm)

    def classifier_signature(self, num_classes: int | None = None, c_in: int | None = None) -> OpSignature:
        return classifier_layer(c_in or self.config.last_dim, num_classes or self.config.num_classes, self.final.fm)

    def op_instances(self, num_classes: int | None = None) -> Iterator[OpInstance]:
        """Every op of the supernet in the order DESIGN.md fixes for architecture params."""
        for i, sig in enumerate(self.stem_signatures()):
            yield OpInstance("stem", 0, i, sig)
        for b in self.routing_blocks:
            for j, src in enumerate(b.in_edges):
                for op in self.head_primitives:
                    yield OpInstance("head", b.id, j, self.head_signature(b.id, src, op))
            for layer in range(b.num_layers):
                for op in self.stack_primitives:
                    yield OpInstance("stack", b.id, layer, self.stack_signature(b.id, op))
        for j, src in enumerate(self.final.in_edges):
            yield OpInstance("final", self.final.id, j, self.final_signature(src))
        yield OpInstance("classifier", self.final.id, 0, self.classifier_signature(num_classes))
        if not self.config.final_conv_in_derived:
            # derived ResNets classify straight from the last block's width
            for src in self.final.in_edges:
                s = self.classifier_signature(num_classes, c_in=self.blocks[src].ch)
                yield OpInstance("classifier", self.final.id, 1 + src, s)

    def unique_signatures(self, batch: int = 1, dtype: str = "fp32", num_classes: int | None = None) -> list[OpSignature]:
        """The op signatures a profiler must measure for this space, de-duplicated."""
        seen: dict[str, OpSignature] = {}
        for inst in self.op_instances(num_classes):
            sig = inst.signature.with_run(batch, dtype)
            seen.setdefault(sig.key(), sig)
        return sorted(seen.values())

    def describe(self) -> dict:
        """The JSON form `space show --json` prints."""
        return {
            "name": self.name,
            "source": self.source,
            "input_size": self.config.input_size,
            "num_classes": self.config.num_classes,
            "softmax_temp": self.config.softmax_temp,
            "primitives": {"head": list(self.config.primitives.head), "stack": list(self.config.primitives.stack)},
            "blocks": [
                {
                    "id": b.id,
                    "ch": b.ch,
                    "fm": b.fm,
                    "stage": b.stage,
                    "num_layers": b.num_layers,
                    "out_edges": list(b.out_edges),
                    "out_strides": list(b.out_strides),
                    "in_edges": list(b.in_edges),
                    "final": b.is_final,
                }
                for b in self.blocks
            ],
            "num_paths": self.num_paths,
            "log10_num_archs": round(self.log10_num_archs, 3),
            "unique_ops": len(self.unique_signatures()),
            "op_instances": sum(1 for _ in self.op_instances()),
        }


def _build_blocks(config: SpaceConfig, source: str) -> tuple[Block, ...]:
    """Apply the paper's rule: block i connects to i+j+1 for j < adjoin[stage_i], stopping
    at the first block more than one stage ahead or whose fm ratio is neither 1 nor 2."""
    scale = config.blocks
    if scale.num_layers[0] != 0:
        raise DensenasError(f"{source}: field blocks.num_layers: entry 0 must be 0 (block 0 is the stem's output)")
    chs = list(scale.ch) + [config.last_dim]
    fms = list(scale.fm) + [scale.fm[-1]]
    stages = list(scale.stage)
    layers = list(scale.num_layers) + [0]
    n = len(chs)
    outs: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for i in range(n - 1):
        for j in range(config.adjoin_connect_nums[stages[i]]):
            dst = i + j + 1
            if dst >= n or stages[dst] - stages[i] > 1:
                break
            ratio = fms[i] / fms[dst]
            if ratio == 2:
                outs[i].append((dst, 2))
            elif ratio == 1:
                outs[i].append((dst, 1))
            else:
                break
    ins: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for dst in range(n):
        for src in range(dst - 1, -1, -1):  # nearest preceding block first
            for d, s in outs[src]:
                if d == dst:
                    ins[dst].append((src, s))
    for i in range(n):
        what = "the final conv" if i == n - 1 else f"block {i} (ch {chs[i]}, fm {fms[i]})"
        if i > 0 and not ins[i]:
            raise DensenasError(
                f"{source}: field blocks: {what} has no incoming edge; the rule connects only "
                "blocks at most one stage apart whose fm ratio is 1 or 2"
            )
        if i < n - 1 and not outs[i]:
            raise DensenasError(
                f"{source}: field blocks: {what} has no outgoing edge; the rule connects only "
                "blocks at most one stage apart whose fm ratio is 1 or 2"
            )
    return tuple(
        Block(
            id=i,
            ch=chs[i],
            fm=fms[i],
            stage=stages[i],
            num_layers=layers[i],
            out_edges=tuple(d for d, _ in outs[i]),
            out_strides=tuple(s for _, s in outs[i]),
            in_edges=tuple(s for s, _ in ins[i]),
            in_strides=tuple(st for _, st in ins[i]),
            is_final=(i == n - 1),
        )
        for i in range(n)
    )
