"""The closed sets of names a user picks from, one enum each, so that what is accepted and
what an error lists cannot drift apart."""

from __future__ import annotations

from enum import Enum

from densenas.errors import DensenasError


class Choice(str, Enum):
    def __str__(self) -> str:  # the plain value in messages and argv, on every Python version
        return self.value

    @classmethod
    def parse(cls, value: str, what: str) -> "Choice":
        """``value`` as a member; otherwise one DensenasError: ``{what} must be one of ...``."""
        try:
            return cls(value)
        except ValueError:
            raise DensenasError(f"{what} must be one of {', '.join(m.value for m in cls)}, got {value!r}") from None


class CostType(Choice):
    """What the search's cost term counts: LUT latency, or computed MACs or params."""

    LATENCY = "latency"
    FLOPS = "flops"
    PARAMS = "params"


class Precision(Choice):
    FP32 = "fp32"
    FP16 = "fp16"
