"""Per-op costs of a search space, laid out like its architecture parameters.

Latency costs come from ``LatencyModel`` (an op's cost net of the per-call overhead,
the overhead and the calibration once per network); MACs and params are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import torch

from densenas.choices import CostType
from densenas.cost.latency import LatencyModel
from densenas.errors import DensenasError
from densenas.signature import OpSignature
from densenas.space import SearchSpace


@dataclass
class CostTables:
    """``head[n]``: (branches, head ops); ``stack[n]``: (layers, stack ops) for routing
    block n (0-based over blocks 1..n-1); ``final``: (final branches,): the supernet's
    conv1_1 per branch; ``derived_tail``: (final branches,): what a derived network
    pays after its last block when that block is the branch's source (final conv +
    classifier, or only a classifier on the block's width when the space's derived
    networks have no final conv, as the ResNet space)."""

    cost_type: str
    unit: str
    stem: float
    classifier: float
    head: list[torch.Tensor]
    stack: list[torch.Tensor]
    final: torch.Tensor
    model: LatencyModel | None = None  # latency tables: how the sum of ops becomes a network's cost
    derived_tail: torch.Tensor | None = None
    source: str = ""  # what the costs come from, for messages ("LUT luts/x.json", "computed MACs")

    def to(self, device: torch.device | str) -> "CostTables":
        return CostTables(self.cost_type, self.unit, self.stem, self.classifier,
                          [t.to(device) for t in self.head], [t.to(device) for t in self.stack],
                          self.final.to(device), self.model,
                          None if self.derived_tail is None else self.derived_tail.to(device), self.source)

    def total(self, sum_of_ops: Any) -> Any:
        """Network cost from the sum of its tabled ops (floats, arrays or tensors); MACs
        and params add up as they are."""
        return sum_of_ops if self.model is None else self.model.network_ms(sum_of_ops)

    @property
    def network_offset(self) -> float:
        """What every network pays whatever its ops (overhead and calibration offset)."""
        return float(self.total(0.0))

    @property
    def scale(self) -> float:
        """The calibration's factor on the sum of ops (1 without one)."""
        return 1.0 if self.model is None else self.model.calibration.scale

    @classmethod
    def build(cls, space: SearchSpace, cost_type: str = "latency", *, lut=None, batch: int | None = None,
              precision: str | None = None, num_classes: int | None = None, skip_reg: bool | None = None) -> "CostTables":
        CostType.parse(cost_type, "the cost type")
        skip_reg = space.config.search.cost.skip_reg if skip_reg is None else skip_reg
        if cost_type == "latency":
            if lut is None:
                raise DensenasError("cost type latency needs a LUT (--lut)")
            model: LatencyModel | None = LatencyModel(lut, batch=batch, precision=precision)
            sigs = space.unique_signatures(model.batch, model.precision, num_classes)
            lut.require(sigs, batch=model.batch, precision=model.precision, input_size=space.input_size)
            cost: Callable[[OpSignature], float] = model.layer_charge_ms
            unit = "ms"
            source = f"LUT {lut.source}"
        else:
            counter = _macs if cost_type == "flops" else _params

            def cost(sig: OpSignature) -> float:
                return counter(sig) / 1e6

            model, unit = None, "M MACs" if cost_type == "flops" else "M params"
            source = "computed MACs" if cost_type == "flops" else "computed params"
        tables = cls._from_costs(space, cost, cost_type, unit, model, num_classes, skip_reg)
        tables.source = source
        return tables

    @classmethod
    def _from_costs(cls, space, cost, cost_type, unit, model, num_classes, skip_reg) -> "CostTables":
        head, stack = [], []
        stack_ops = space.stack_primitives
        for b in space.routing_blocks:
            head.append(torch.tensor(
                [[cost(space.head_signature(b.id, src, op)) for op in space.head_primitives] for src in b.in_edges],
                dtype=torch.float64).reshape(len(b.in_edges), len(space.head_primitives)))
            # a block without stacked layers has no stack ops to charge (nor LUT rows for them)
            row = [cost(space.stack_signature(b.id, op)) for op in stack_ops] if b.num_layers else [0.0] * len(stack_ops)
            # the paper's skip_reg: a skipped layer is charged a tenth of the first op
            row = [row[0] / 10.0 if skip_reg and op.skip else c for op, c in zip(stack_ops, row)]
            stack.append(torch.tensor([row] * b.num_layers, dtype=torch.float64).reshape(b.num_layers, len(stack_ops)))
        final = torch.tensor([cost(space.final_signature(src)) for src in space.final.in_edges], dtype=torch.float64)
        stem = sum(cost(sig) for sig in space.stem_signatures())
        classifier = cost(space.classifier_signature(num_classes))
        if space.config.final_conv_in_derived:
            tail = final + classifier
        else:
            tail = torch.tensor([cost(space.classifier_signature(num_classes, c_in=space.blocks[src].ch))
                                 for src in space.final.in_edges], dtype=torch.float64)
        return cls(cost_type, unit, stem, classifier, head, stack, final, model, tail)


@lru_cache(maxsize=4096)
def _macs(sig: OpSignature) -> int:
    """Multiply-adds of one op by torch's FLOP counter, run on the meta device: shapes
    only, no arithmetic (the same counts as a real forward, about 15x faster at 224x224)."""
    from torch.utils.flop_counter import FlopCounterMode

    from densenas.ops import input_shape_for_signature, module_for_signature

    with torch.device("meta"):
        module = module_for_signature(sig)
        x = torch.empty(input_shape_for_signature(sig.with_run(1, "fp32")))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() // 2


@lru_cache(maxsize=4096)
def _params(sig: OpSignature) -> int:
    from densenas.counting import count_params
    from densenas.ops import module_for_signature

    with torch.device("meta"):
        return count_params(module_for_signature(sig))
