"""What a search prints each epoch so its failure modes show while it runs.

- Collapse: the derived network sliding to the cheapest ops as soon as architecture
  updates start. Shown by the mean entropy of the op distributions (near its maximum
  log(n) means undecided, near 0 means decided) and by the derived network's op mix:
  counts per op, the share of stacked layers it skips, and the share of its choices that
  are the cheapest op on offer.
- The relaxation gap: the expected cost (chained, over the full softmax) is what the
  loss sees; the derived network is what you get. Both are printed side by side.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from densenas import runtime as rt
from densenas.arch import Arch, fit_to_space
from densenas.cost.tables import CostTables
from densenas.signature import OpSpec
from densenas.space import SearchSpace

COLLAPSE_SHARE = 0.9  # warn when this share of the derived choices are the cheapest op


def mean_entropy(logits: Sequence[torch.Tensor], temperature: float = 1.0) -> float:
    """Mean entropy (nats) of softmax(row / temperature) over every row of ``logits``."""
    rows = [t.detach().to(torch.float64).reshape(-1, t.shape[-1]) for t in logits if t.numel()]
    if not rows:
        return 0.0
    total, count = 0.0, 0
    for r in rows:
        logp = F.log_softmax(r / temperature, dim=-1)
        total += float(-(logp.exp() * logp).sum())
        count += r.shape[0]
    return total / count


def max_entropy(n: int) -> float:
    return math.log(n) if n > 1 else 0.0


@dataclass
class OpMix:
    """The ops of a derived network: ``counts`` per op (head and kept stack ops, and
    ``skip_connect`` for each skipped layer), and how many choices were the cheapest."""

    counts: dict[OpSpec, int] = field(default_factory=dict)
    skipped: int = 0
    stack_layers: int = 0
    cheapest: int = 0
    choices: int = 0

    @property
    def skip_share(self) -> float:
        return self.skipped / self.stack_layers if self.stack_layers else 0.0

    @property
    def cheapest_share(self) -> float:
        return self.cheapest / self.choices if self.choices else 0.0

    @property
    def collapsed(self) -> bool:
        return self.choices > 0 and self.cheapest_share >= COLLAPSE_SHARE

    def to_dict(self) -> dict:
        return {"counts": {op.name: n for op, n in self.counts.items()}, "skipped": self.skipped,
                "stack_layers": self.stack_layers, "skip_share": self.skip_share, "cheapest_share": self.cheapest_share}

    def describe(self) -> str:
        ops = ", ".join(f"{_short(op)} x{n}" for op, n in sorted(self.counts.items()) if not op.skip)
        return f"{ops}; skip {self.skipped}/{self.stack_layers} ({100 * self.skip_share:.0f}%)"


def _short(op: str) -> str:
    return op.removeprefix("mbconv_")


def op_mix(arch: Arch, space: SearchSpace, tables: CostTables | None = None) -> OpMix:
    """Count the derived network's ops; with cost ``tables``, also how many of its head
    and stack choices (a skipped layer is a choice of skip) are the cheapest of their row."""
    fitted = arch if all(b.block_id is not None for b in arch.blocks) else fit_to_space(arch, space)
    counts: Counter[OpSpec] = Counter()
    skip = next((op for op in space.stack_primitives if op.skip), None)  # what a dropped layer chose
    mix = OpMix()
    prev = 0
    for b in fitted.blocks:
        bid = int(b.block_id)  # type: ignore[arg-type]
        layers = space.blocks[bid].num_layers
        skipped = layers - len(b.stack_ops)
        counts[b.head_op] += 1
        counts.update(b.stack_ops)
        if skipped:
            counts[skip] += skipped
        mix.skipped += skipped
        mix.stack_layers += layers
        if tables is not None:
            n = bid - 1
            head_row = tables.head[n][space.branch_index(bid, prev)]
            mix.cheapest += int(_is_cheapest(head_row, space.head_primitives.index(b.head_op)))
            if layers:
                row = tables.stack[n][0]
                ops = list(b.stack_ops) + [skip] * skipped
                mix.cheapest += sum(int(_is_cheapest(row, space.stack_primitives.index(op))) for op in ops)
            mix.choices += 1 + layers
        prev = bid
    mix.counts = dict(counts)
    return mix


def _is_cheapest(row: torch.Tensor, index: int) -> bool:
    return bool(row[index] <= row.min() + 1e-12)


# -- what the supernet knows ------------------------------------------------------------------

CHANCE_MARGIN = 1.5  # warn when single paths score below this many times chance after warm-up
RANDOM_PATHS = 3  # random single paths evaluated per epoch


@torch.no_grad()
def batch_stat_correct(forward, batches, device: torch.device) -> tuple[float, float]:
    """(correct, count) of ``forward`` (a network in train mode, so batch norm runs on batch
    statistics) on ``batches``."""
    correct = count = 0.0
    for x, y in batches:
        x, y = rt.images_to(x, device), y.to(device, non_blocking=True)
        correct += float((forward(x).argmax(1) == y).sum())
        count += y.numel()
    return correct, count


def inherited_network(supernet: torch.nn.Module, arch: Arch, space: SearchSpace, device: torch.device,
                      where: str = "single-path check") -> torch.nn.Module:
    """The derived network of ``arch`` holding ``supernet``'s weights (``densenas.nets.inherit``)."""
    from densenas.nets import build_derived
    from densenas.nets.inherit import copy_path_weights

    net = build_derived(arch)
    copy_path_weights(net, arch, space, supernet, where=where)
    return rt.to_device(net, device)


def path_correct(supernet: torch.nn.Module, arch: Arch, space: SearchSpace, batches, device: torch.device) -> tuple[float, float]:
    """(correct, count) of one single path of ``supernet`` on ``batches``: the derived network
    of ``arch`` with the supernet's weights, batch norm on batch statistics, since running
    statistics gathered under path sampling belong to no one path."""
    return batch_stat_correct(inherited_network(supernet, arch, space, device).train(), batches, device)


def supernet_path_correct(supernet: torch.nn.Module, head, stack, batches, device: torch.device) -> tuple[float, float]:
    """(correct, count) of the supernet running one path (one op per mixed op, every block
    and branch, as a weight step trains it), batch norm on batch statistics."""
    supernet.train()
    return batch_stat_correct(lambda x: supernet(x, head, stack), batches, device)


def at_chance(top1: float | None, num_classes: int) -> bool:
    """Whether a validation accuracy (percent) is indistinguishable from guessing."""
    return top1 is not None and top1 < CHANCE_MARGIN * 100.0 / num_classes
