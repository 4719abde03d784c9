"""Networks: the supernet of a search space and the derived one-path network."""

from densenas.nets.derived import DerivedNet, build_derived
from densenas.nets.supernet import MixedOp, SuperNet

__all__ = ["DerivedNet", "MixedOp", "SuperNet", "build_derived"]
