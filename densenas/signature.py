"""Op names decoded once into data, and the key a LUT row is stored under.

An op name on the command line or in a file (``mbconv_k5_t6``) is parsed here into an
``OpSpec`` and everything else passes that object around. An ``OpSignature`` is what a
profiler measures and what a LUT row is keyed by: the op, its widths, stride, input
size, batch and precision. Nothing here needs torch.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from densenas.errors import DensenasError

MBCONV_KERNELS = (3, 5, 7)
MBCONV_EXPANDS = (1, 3, 6)
SKIP = "skip_connect"  # the stack op that drops its layer from a derived network
CANDIDATE_KINDS = ("mbconv", "basic_block", "bottle_neck", SKIP)  # what a space may search over
FIXED_KINDS = ("conv1_1", "classifier", "stem_relu6", "stem_relu")  # layers every network has where it has them

_MBCONV = re.compile(r"^mbconv_k(\d+)_t(\d+)$")


@dataclass(frozen=True)
class OpSpec:
    """A decoded op name: ``kind`` plus the knobs of that kind."""

    kind: str
    kernel: int = 0
    expand: int = 0

    @property
    def name(self) -> str:
        if self.kind == "mbconv":
            return f"mbconv_k{self.kernel}_t{self.expand}"
        return self.kind

    @property
    def candidate(self) -> bool:
        return self.kind in CANDIDATE_KINDS

    def __str__(self) -> str:
        return self.name


def parse_op(name: str) -> OpSpec:
    """Decode an op name; raise DensenasError naming it when it is not one we build."""
    if not isinstance(name, str):
        raise DensenasError(f"op name must be a string, got {name!r}")
    m = _MBCONV.match(name)
    if m:
        kernel, expand = int(m.group(1)), int(m.group(2))
        if kernel not in MBCONV_KERNELS or expand not in MBCONV_EXPANDS:
            raise DensenasError(
                f"unknown op {name!r}: mbconv kernels are {MBCONV_KERNELS}, expansions {MBCONV_EXPANDS}"
            )
        return OpSpec("mbconv", kernel, expand)
    if name != "mbconv" and name in CANDIDATE_KINDS + FIXED_KINDS:
        return OpSpec(name)
    raise DensenasError(f"unknown op {name!r}; known: {', '.join(known_ops())}")


def known_ops() -> list[str]:
    mb = [f"mbconv_k{k}_t{t}" for k in MBCONV_KERNELS for t in MBCONV_EXPANDS]
    return mb + list(CANDIDATE_KINDS[1:] + FIXED_KINDS)


@dataclass(frozen=True, order=True)
class OpSignature:
    """What one LUT row measures: the op at one shape, batch and precision."""

    op: str
    c_in: int
    c_out: int
    stride: int
    h: int
    w: int
    batch: int = 1
    dtype: str = "fp32"

    def key(self) -> str:
        return (
            f"{self.op}|{self.c_in}|{self.c_out}|{self.stride}|{self.h}x{self.w}"
            f"|b{self.batch}|{self.dtype}"
        )

    def with_run(self, batch: int, dtype: str) -> "OpSignature":
        return OpSignature(self.op, self.c_in, self.c_out, self.stride, self.h, self.w, batch, dtype)

    def input_shape(self) -> tuple[int, ...]:
        """The input tensor shape this op is measured at (NCHW, or N x C for the classifier)."""
        return (self.batch, self.c_in, self.h, self.w)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "OpSignature":
        return cls(
            op=str(d["op"]),
            c_in=int(d["c_in"]),
            c_out=int(d["c_out"]),
            stride=int(d["stride"]),
            h=int(d["h"]),
            w=int(d["w"]),
            batch=int(d.get("batch", 1)),
            dtype=str(d.get("dtype", "fp32")),
        )

    def __str__(self) -> str:
        return f"{self.op}({self.c_in}->{self.c_out}, s{self.stride}, {self.h}x{self.w}, b{self.batch}, {self.dtype})"


def stem_layers(stem: str, init_dim: int, head_dim: int | None, input_size: int) -> list[OpSignature]:
    """The stem of every network, derived or super: a stride-2 3x3 conv, for MobileNetV2
    followed by its first mbconv_k3_t1."""
    fm = input_size // 2
    if stem == "mbv2":
        return [OpSignature("stem_relu6", 3, init_dim, 2, input_size, input_size),
                OpSignature("mbconv_k3_t1", init_dim, head_dim, 1, fm, fm)]
    return [OpSignature("stem_relu", 3, init_dim, 2, input_size, input_size)]
