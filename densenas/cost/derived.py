"""The exact cost of a derived architecture: the sum along its path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from densenas.arch import Arch
from densenas.cost.latency import LatencyModel
from densenas.errors import DensenasError

if TYPE_CHECKING:
    from densenas.lut.store import LatencyTable


@dataclass
class ArchCost:
    total: float
    unit: str
    sum_of_ops: float
    network_offset: float
    per_block: list[dict] = field(default_factory=list)  # stem, each block, final conv + classifier
    scale: float = 1.0  # the LUT's calibration, as applied to this network
    per_layer: float = 0.0
    layers: int = 0
    in_context: bool = False  # op costs fitted inside whole networks (a refinement), no calibration

    def to_dict(self) -> dict:
        return {"total": self.total, "unit": self.unit, "sum_of_ops": self.sum_of_ops,
                "network_offset": self.network_offset, "blocks": self.per_block}

    def terms(self) -> str:
        """How the total is made: ``1.1 x 2.0000 ms of ops +0.0100 ms x 17 layers +0.0250 ms per network``."""
        scale = "" if self.scale == 1.0 else f"{self.scale:g} x "
        layers = "" if self.per_layer == 0.0 else f" {self.per_layer:+.4f} {self.unit} x {self.layers} layers"
        ops = "of ops in context" if self.in_context else "of ops"
        return f"{scale}{self.sum_of_ops:.4f} {self.unit} {ops}{layers} {self.network_offset:+.4f} {self.unit} per network"


def arch_cost(arch: Arch, lut: "LatencyTable", *, batch: int | None = None,
              precision: str | None = None) -> ArchCost:
    """Predicted latency of a derived network from a LUT (``LatencyModel``): each op's
    cost summed per part of the network, the network's total from that sum and its
    layer count, each part's share without the once-per-network terms."""
    model = LatencyModel(lut, batch=batch, precision=precision)
    if arch.input_size != lut.input_size and lut.input_size:
        raise DensenasError(
            f"LUT {lut.source} was measured for {lut.input_size}x{lut.input_size} inputs, "
            f"the architecture takes {arch.input_size}x{arch.input_size}"
        )
    sigs = [sig.with_run(model.batch, model.precision) for _, _, sig in arch.layers()]
    lut.require(sigs, batch=model.batch, precision=model.precision)
    groups: dict[str, dict] = {}
    for (role, idx, _), sig in zip(arch.layers(), sigs):
        if role == "stem":
            key, block_id = "stem", None
        elif role in ("final", "classifier"):
            key = "final conv + classifier" if arch.final_conv is not None else "classifier"
            block_id = None
        else:
            key, block_id = f"block {idx}", arch.blocks[idx].block_id
        g = groups.setdefault(key, {"name": key, "block_id": block_id, "ops": [], "sum": 0.0})
        g["ops"].append(sig.op.name)
        g["sum"] += model.op_cost_ms(sig)
    total_ops = sum(g["sum"] for g in groups.values())
    per_block = [{"name": g["name"], "block_id": g["block_id"], "ops": g["ops"],
                  "latency_ms": model.part_ms(g["sum"], len(g["ops"]))} for g in groups.values()]
    cal = model.calibration
    return ArchCost(float(model.network_ms(total_ops, len(sigs))), "ms", total_ops, model.once_ms, per_block,
                    scale=cal.scale, per_layer=cal.per_layer_ms, layers=len(sigs), in_context=model.refined)
