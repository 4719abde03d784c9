"""The closed sets of names a user picks from, one enum each: what is accepted and what an
error lists cannot drift apart."""

from __future__ import annotations

from enum import Enum

from densenas.errors import DensenasError


class Choice(str, Enum):
    def __str__(self) -> str:  # the plain value in messages, on every Python version
        return self.value

    @classmethod
    def parse(cls, value: str, what: str) -> "Choice":
        """``value`` as a member, or one DensenasError: ``{what} must be one of ...``."""
        try:
            return cls(value)
        except ValueError:
            raise DensenasError(f"{what} must be one of {', '.join(m.value for m in cls)}, got {value!r}") from None


class CostType(Choice):
    LATENCY = "latency"  # from a LUT
    FLOPS = "flops"  # computed multiply-adds
    PARAMS = "params"  # computed


class Precision(Choice):
    FP32 = "fp32"
    FP16 = "fp16"
