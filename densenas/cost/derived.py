"""The exact cost of a derived architecture: the sum along its path."""

from __future__ import annotations

from dataclasses import dataclass, field

from densenas.arch import Arch
from densenas.errors import DensenasError


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

    def to_dict(self) -> dict:
        return {"total": self.total, "unit": self.unit, "sum_of_ops": self.sum_of_ops,
                "network_offset": self.network_offset, "blocks": self.per_block}

    def terms(self) -> str:
        """How the total is made: ``1.1 x 2.0000 ms of ops +0.0100 ms x 17 layers +0.0250 ms per network``."""
        scale = "" if self.scale == 1.0 else f"{self.scale:g} x "
        layers = "" if self.per_layer == 0.0 else f" {self.per_layer:+.4f} {self.unit} x {self.layers} layers"
        return f"{scale}{self.sum_of_ops:.4f} {self.unit} of ops{layers} {self.network_offset:+.4f} {self.unit} per network"


def arch_cost(arch: Arch, lut, *, batch: int | None = None, precision: str | None = None) -> ArchCost:
    """Predicted latency of a derived network from a LUT: each op charged its median
    less the per-call overhead (times the calibration's scale, plus its per-layer term),
    the overhead and the calibration's offset added once."""
    batch = batch or lut.batch
    precision = precision or lut.precision
    if arch.input_size != lut.input_size and lut.input_size:
        raise DensenasError(
            f"LUT {lut.source} was measured for {lut.input_size}x{lut.input_size} inputs, "
            f"the architecture takes {arch.input_size}x{arch.input_size}"
        )
    sigs = [sig.with_run(batch, precision) for _, _, sig in arch.layers()]
    lut.require(sigs, batch=batch, precision=precision)
    overhead = float(lut.overhead_ms)
    cal = lut.calibration or {}
    scale = float(cal.get("scale", 1.0))
    per_layer = float(cal.get("per_layer_ms", 0.0))
    offset = overhead + float(cal.get("network_offset_ms", 0.0))
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
        g["ops"].append(sig.op)
        g["sum"] += max(lut.latency_ms(sig) - overhead, 0.0)
    total_ops = sum(g["sum"] for g in groups.values())
    per_block = [{"name": g["name"], "block_id": g["block_id"], "ops": g["ops"],
                  "latency_ms": scale * g["sum"] + per_layer * len(g["ops"])} for g in groups.values()]
    return ArchCost(scale * total_ops + per_layer * len(sigs) + offset, "ms", total_ops, offset, per_block,
                    scale=scale, per_layer=per_layer, layers=len(sigs))
