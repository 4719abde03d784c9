"""The latency model: how a LUT's rows become a network's predicted latency.

Every prediction (the search's cost tables, ``arch_cost``, ``predict``, ``derive
--budget``, ``bench`` and ``lut validate``) goes through ``LatencyModel``:

- each op a network runs costs ``op_cost_ms``: its isolated median less the backend's
  per-call overhead (a network pays that overhead once, not once per op), or, when the
  LUT has a refinement, the row's in-context cost ``context_ms`` where it has one;
- the network costs ``network_ms(sum of op costs, layers)``: the overhead once, then the
  LUT's calibration (``Calibration.network_ms``). A refinement supersedes the
  calibration: in-context costs were fitted against whole networks, so a calibration
  fitted to the isolated sum would correct them a second time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from densenas.lut.meta import Calibration
from densenas.signature import OpSignature

if TYPE_CHECKING:
    from densenas.lut.store import LatencyTable, LutRow


class LatencyModel:
    """Op costs and network totals from one LUT, at one batch and precision (the LUT's by default)."""

    def __init__(self, table: "LatencyTable", *, batch: int | None = None, precision: str | None = None) -> None:
        self.table = table
        self.batch = batch or table.batch
        self.precision = precision or table.precision
        self.overhead_ms = table.overhead_ms
        self.refinement = table.refinement
        self.calibration = Calibration() if self.refinement is not None else table.calibration

    @property
    def refined(self) -> bool:
        """Whether rows' in-context costs (and no calibration) make the prediction."""
        return self.refinement is not None

    def op_cost_ms(self, sig: OpSignature) -> float:
        """What a network pays for running ``sig`` once (DensenasError when the LUT lacks it)."""
        row = self.table.row(sig.with_run(self.batch, self.precision))
        if self.refined and row.context_ms is not None:
            return row.context_ms
        return self.isolated_cost_ms(row)

    def isolated_cost_ms(self, row: "LutRow") -> float:
        """A row's cost as timed alone: its median less the per-call overhead (the prior
        an in-context fit starts from)."""
        return max(row.median_ms - self.overhead_ms, 0.0)

    def network_ms(self, sum_of_op_costs: Any, layers: Any = 0) -> Any:
        """A network's latency from the sum of its ops' ``op_cost_ms`` and how many layers
        it runs (floats, numpy arrays or tensors)."""
        return self.calibration.network_ms(sum_of_op_costs, layers, self.overhead_ms)

    @property
    def once_ms(self) -> float:
        """What every network pays whatever its ops: the overhead and the calibration's offset."""
        return float(self.network_ms(0.0, 0))

    def part_ms(self, sum_of_op_costs: float, layers: int) -> float:
        """The share of a network's latency that one part of it (a block) adds."""
        return float(self.network_ms(sum_of_op_costs, layers)) - self.once_ms

    def layer_charge_ms(self, sig: OpSignature) -> float:
        """``sig``'s cost with the calibration's per-layer term folded in, for tables
        that sum ops without counting layers: ``network_ms(sum of charges)`` equals
        ``network_ms(sum of op costs, layers)``. A skipped layer is dropped from a
        network, so it is not charged the per-layer term."""
        own = self.op_cost_ms(sig)
        return own if sig.op.skip else own + self.calibration.per_layer_ms / self.calibration.scale
