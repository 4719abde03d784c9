"""Op names decoded once into data, and the key a LUT row is stored under.

An op name on the command line or in a file (``mbconv_k5_t6``) is parsed here into an
``OpSpec`` and everything else passes that object around. An ``OpSignature`` is what a
profiler measures and what a LUT row is keyed by: the op, its widths, stride, input
size, batch and precision; a network's plan is a list of them (``Layer``), whose stem
and fixed layers are built here. Nothing here needs torch.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import NamedTuple

from densenas.errors import DensenasError

MBCONV_KERNELS = (3, 5, 7)
MBCONV_EXPANDS = (1, 3, 6)
SKIP = "skip_connect"  # the stack op that drops its layer from a derived network
CANDIDATE_KINDS = ("mbconv", "basic_block", "bottle_neck", SKIP)  # what a space may search over
FIXED_KINDS = ("conv1_1", "classifier", "stem_relu6", "stem_relu")  # layers every network has where it has them

_MBCONV = re.compile(r"^mbconv_k(\d+)_t(\d+)$")


class OpSpec(str):
    """A decoded op name: ``kind`` plus the knobs of that kind, read once from the name
    it still is (so LUT keys, arch.json and net_config are written from it unchanged).
    Built from an ``OpSpec`` it is that same object."""

    kind: str
    kernel: int
    expand: int

    def __new__(cls, name: str) -> "OpSpec":
        if isinstance(name, OpSpec):
            return name
        if not isinstance(name, str):
            raise DensenasError(f"op name must be a string, got {name!r}")
        kind, kernel, expand = name, 0, 0
        m = _MBCONV.match(name)
        if m:
            kind, kernel, expand = "mbconv", int(m.group(1)), int(m.group(2))
            if kernel not in MBCONV_KERNELS or expand not in MBCONV_EXPANDS:
                raise DensenasError(
                    f"unknown op {name!r}: mbconv kernels are {MBCONV_KERNELS}, expansions {MBCONV_EXPANDS}"
                )
        elif name == "mbconv" or name not in CANDIDATE_KINDS + FIXED_KINDS:
            raise DensenasError(f"unknown op {name!r}; known: {', '.join(known_ops())}")
        spec = super().__new__(cls, name)
        spec.kind, spec.kernel, spec.expand = kind, kernel, expand
        return spec

    @property
    def name(self) -> str:
        """The name as a plain string (what files and torch-saved records hold)."""
        return str.__str__(self)

    @property
    def candidate(self) -> bool:
        return self.kind in CANDIDATE_KINDS

    @property
    def mbconv(self) -> bool:
        return self.kind == "mbconv"

    @property
    def skip(self) -> bool:
        """A skipped stack layer: dropped from a derived network."""
        return self.kind == SKIP


def known_ops() -> list[str]:
    mb = [f"mbconv_k{k}_t{t}" for k in MBCONV_KERNELS for t in MBCONV_EXPANDS]
    return mb + list(CANDIDATE_KINDS[1:] + FIXED_KINDS)


@dataclass(frozen=True, order=True)
class OpSignature:
    """What one LUT row measures: the op at one shape, batch and precision. An op given
    by name is decoded here."""

    op: OpSpec
    c_in: int
    c_out: int
    stride: int
    h: int
    w: int
    batch: int = 1
    dtype: str = "fp32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "op", OpSpec(self.op))

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
        return {**asdict(self), "op": self.op.name}

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


class Layer(NamedTuple):
    """One layer of a network's plan: role (stem, head, stack, final, classifier), block, what it computes."""

    role: str
    block: int
    signature: OpSignature


FINAL_CONV = OpSpec("conv1_1")
MBV2_STEM_HEAD = OpSpec("mbconv_k3_t1")  # the MobileNetV2 stem's last layer


def stem_layers(stem: str, init_dim: int, head_dim: int | None, input_size: int) -> list[OpSignature]:
    """The stem of every network, derived or super: a stride-2 3x3 conv, for MobileNetV2
    followed by its first mbconv_k3_t1."""
    fm = input_size // 2
    if stem == "mbv2":
        return [OpSignature("stem_relu6", 3, init_dim, 2, input_size, input_size),
                OpSignature(MBV2_STEM_HEAD, init_dim, head_dim, 1, fm, fm)]
    return [OpSignature("stem_relu", 3, init_dim, 2, input_size, input_size)]


# The fixed layers after the blocks, alike in a derived network and the supernet.

def final_layer(c_in: int, c_out: int, fm: int) -> OpSignature:
    return OpSignature(FINAL_CONV, c_in, c_out, 1, fm, fm)


def classifier_layer(c_in: int, num_classes: int, fm: int) -> OpSignature:
    return OpSignature("classifier", c_in, num_classes, 1, fm, fm)
