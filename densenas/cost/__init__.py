"""Cost model: per-op cost tables (LUT latency, MACs or params) and chained cost estimation."""

from densenas.cost.chained import chained_cost, chained_cost_breakdown
from densenas.cost.derived import ArchCost, arch_cost
from densenas.cost.latency import LatencyModel
from densenas.cost.tables import CostTables

__all__ = ["ArchCost", "CostTables", "LatencyModel", "arch_cost", "chained_cost", "chained_cost_breakdown"]
