"""A derived (one-path) architecture: ``arch.json`` (schema ``densenas.arch/1``) and the
paper's ``net_config`` string, each converted to the other without evaluating code."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from densenas.errors import DensenasError
from densenas.fileio import read_json, write_json
from densenas.literal import parse_literal
from densenas.signature import (FINAL_CONV, MBV2_STEM_HEAD, Layer, OpSignature, OpSpec, classifier_layer, final_layer,
                                stem_layers)

ARCH_SCHEMA = "densenas.arch/1"


@dataclass(frozen=True)
class ArchBlock:
    """One derived block; ops given by name are decoded here."""

    in_ch: int
    out_ch: int
    stride: int
    head_op: OpSpec
    stack_ops: tuple[OpSpec, ...] = ()
    block_id: int | None = None  # the supernet block this one came from, when known

    def __post_init__(self) -> None:
        object.__setattr__(self, "head_op", OpSpec(self.head_op))
        object.__setattr__(self, "stack_ops", tuple(map(OpSpec, self.stack_ops)))


@dataclass(frozen=True)
class Arch:
    space: str
    input_size: int
    num_classes: int
    stem: str  # "mbv2" or "resnet"
    init_dim: int
    head_dim: int | None
    blocks: tuple[ArchBlock, ...]
    final_conv: tuple[int, int] | None  # (in_ch, out_ch); None: classify from the last block
    extra: dict = field(default_factory=dict, compare=False)

    # -- shape walk -------------------------------------------------------------------

    def stem_layers(self) -> list[OpSignature]:
        return stem_layers(self.stem, self.init_dim, self.head_dim, self.input_size)

    @property
    def stem_out(self) -> int:
        return self.stem_layers()[-1].c_out

    @property
    def feature_dim(self) -> int:
        if self.final_conv is not None:
            return self.final_conv[1]
        return self.blocks[-1].out_ch if self.blocks else self.stem_out

    def layers(self) -> list[Layer]:
        """The network's plan: every layer in order, with its arch block index (-1 for the
        stem) and its signature at batch 1, fp32."""
        out = [Layer("stem", -1, sig) for sig in self.stem_layers()]
        fm = self.input_size // 2
        for i, b in enumerate(self.blocks):
            out.append(Layer("head", i, OpSignature(b.head_op, b.in_ch, b.out_ch, b.stride, fm, fm)))
            fm //= b.stride
            out.extend(Layer("stack", i, OpSignature(op, b.out_ch, b.out_ch, 1, fm, fm)) for op in b.stack_ops)
        if self.final_conv is not None:
            out.append(Layer("final", len(self.blocks), final_layer(*self.final_conv, fm)))
        out.append(Layer("classifier", len(self.blocks), classifier_layer(self.feature_dim, self.num_classes, fm)))
        return out

    def validate(self) -> "Arch":
        """Check what needs no space: known ops, chained widths, strides, input size, classes."""
        if self.num_classes < 1:
            raise DensenasError(f"arch: field num_classes: must be positive, got {self.num_classes}")
        if self.stem not in ("mbv2", "resnet"):
            raise DensenasError(f"arch: field stem: unknown stem {self.stem!r}")
        if self.stem == "mbv2" and not self.head_dim:
            raise DensenasError("arch: field stem.head_dim is required for an mbv2 stem")
        if self.init_dim <= 0 or (self.head_dim is not None and self.head_dim <= 0):
            raise DensenasError("arch: field stem: init_dim and head_dim must be positive")
        if self.input_size < 2:
            raise DensenasError(f"arch: field input_size: {self.input_size} is too small for the stride-2 stem")
        prev = self.stem_out
        fm = self.input_size // 2
        for i, b in enumerate(self.blocks):
            where = f"arch: blocks[{i}]"
            if b.in_ch != prev:
                raise DensenasError(f"{where}: in_ch {b.in_ch} does not chain: the previous layer outputs {prev}")
            if b.stride not in (1, 2):
                raise DensenasError(f"{where}: stride must be 1 or 2, got {b.stride}")
            if min(b.in_ch, b.out_ch) <= 0:
                raise DensenasError(f"{where}: widths must be positive")
            if fm % b.stride:
                raise DensenasError(f"{where}: stride {b.stride} does not divide the {fm}x{fm} feature map")
            fm //= b.stride
            prev = b.out_ch
        if self.final_conv is not None and self.final_conv[0] != prev:
            raise DensenasError(f"arch: final_conv in_ch {self.final_conv[0]} does not chain: the last block outputs {prev}")
        if self.final_conv is not None and self.final_conv[1] <= 0:
            raise DensenasError(f"arch: final_conv out_ch must be positive, got {self.final_conv[1]}")
        return self

    # -- arch.json ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": ARCH_SCHEMA,
            "space": self.space,
            "input_size": self.input_size,
            "num_classes": self.num_classes,
            "stem": {"type": self.stem, "init_dim": self.init_dim, "head_dim": self.head_dim},
            "blocks": [
                {
                    "block_id": b.block_id,
                    "in_ch": b.in_ch,
                    "out_ch": b.out_ch,
                    "stride": b.stride,
                    "head_op": b.head_op.name,
                    "stack_ops": [op.name for op in b.stack_ops],
                }
                for b in self.blocks
            ],
            "final_conv": None if self.final_conv is None else {"in_ch": self.final_conv[0], "out_ch": self.final_conv[1]},
            "net_config": to_net_config(self),
            **({"extra": self.extra} if self.extra else {}),
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())


def arch_from_dict(d: Any, *, source: str = "arch.json") -> Arch:
    """Parse the JSON form; every problem is one DensenasError naming the file and field."""
    if not isinstance(d, dict):
        raise DensenasError(f"{source}: not a JSON object")
    if d.get("schema") != ARCH_SCHEMA:
        raise DensenasError(f"{source}: field schema: expected {ARCH_SCHEMA!r}, got {d.get('schema')!r}")
    f = _Fields(source)
    stem = f.obj(d, "stem")
    fc = None if d.get("final_conv") is None else f.obj(d, "final_conv")
    extra = d.get("extra", {})
    arch = Arch(
        space=f.text(d, "space"),
        input_size=f.integer(d, "input_size"),
        num_classes=f.integer(d, "num_classes"),
        stem=f.text(stem, "type", "stem"),
        init_dim=f.integer(stem, "init_dim", "stem"),
        head_dim=None if stem.get("head_dim") is None else f.integer(stem, "head_dim", "stem"),
        blocks=tuple(_block_from_dict(f, b, f"blocks[{i}]") for i, b in enumerate(f.array(d, "blocks"))),
        final_conv=None if fc is None else (f.integer(fc, "in_ch", "final_conv"), f.integer(fc, "out_ch", "final_conv")),
        extra=extra if isinstance(extra, dict) else {},
    )
    try:
        return arch.validate()
    except DensenasError as exc:
        raise DensenasError(f"{source}: {str(exc).removeprefix('arch: ')}") from None


def _block_from_dict(f: "_Fields", b: Any, where: str) -> ArchBlock:
    if not isinstance(b, dict):
        raise DensenasError(f"{f.source}: field {where}: expected an object, got {type(b).__name__}")
    stack_ops = f.array(b, "stack_ops", where) if "stack_ops" in b else []
    for k, op in enumerate(stack_ops):
        if not isinstance(op, str):
            raise DensenasError(f"{f.source}: field {where}.stack_ops[{k}]: expected an op name, got {_shown(op)}")
    return ArchBlock(
        in_ch=f.integer(b, "in_ch", where),
        out_ch=f.integer(b, "out_ch", where),
        stride=f.integer(b, "stride", where),
        head_op=_op(f.text(b, "head_op", where), f"{f.source}: field {where}.head_op"),
        stack_ops=tuple(_op(op, f"{f.source}: field {where}.stack_ops[{k}]") for k, op in enumerate(stack_ops)),
        block_id=None if b.get("block_id") is None else f.integer(b, "block_id", where),
    )


class _Fields:
    """Typed field access for arch.json: a missing key or a wrong type names its field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def _get(self, d: dict, key: str, where: str, want: tuple[type, ...], what: str) -> Any:
        name = f"{where}.{key}" if where else key
        if key not in d:
            raise DensenasError(f"{self.source}: field {name} is missing")
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, want):
            raise DensenasError(f"{self.source}: field {name}: expected {what}, got {_shown(v)}")
        return v

    def integer(self, d: dict, key: str, where: str = "") -> int:
        return self._get(d, key, where, (int,), "an integer")

    def text(self, d: dict, key: str, where: str = "") -> str:
        return self._get(d, key, where, (str,), "a string")

    def array(self, d: dict, key: str, where: str = "") -> list:
        return self._get(d, key, where, (list,), "a list")

    def obj(self, d: dict, key: str, where: str = "") -> dict:
        return self._get(d, key, where, (dict,), "an object")


def _op(name: str, where: str) -> OpSpec:
    try:
        return OpSpec(name)
    except DensenasError as exc:
        raise DensenasError(f"{where}: {exc}") from None


def _shown(v: Any) -> str:
    """A short form of a wrong value for a message (containers by type name)."""
    if isinstance(v, (bool, float, str)) or v is None or isinstance(v, int) and v.bit_length() <= 64:
        return repr(v)[:60]
    return "a huge integer" if isinstance(v, int) else type(v).__name__


def load_arch(path: str | Path) -> Arch:
    return arch_from_dict(read_json(path, what="architecture file"), source=str(path))


# -- the paper's net_config ------------------------------------------------------------

def to_net_config(arch: Arch) -> str:
    """``[[in, out], head_op, [stack_ops], n_layers, stride]|...|[[in, last], 'conv1_1']``."""
    parts = []
    if arch.stem == "mbv2":
        parts.append(f"[[{arch.init_dim}, {arch.head_dim}], '{MBV2_STEM_HEAD}', [], 0, 1]")
    for b in arch.blocks:
        ops = ", ".join(f"'{op}'" for op in b.stack_ops)
        parts.append(f"[[{b.in_ch}, {b.out_ch}], '{b.head_op}', [{ops}], {len(b.stack_ops)}, {b.stride}]")
    if arch.final_conv is not None:
        parts.append(f"[[{arch.final_conv[0]}, {arch.final_conv[1]}], '{FINAL_CONV}']")
    return "|".join(parts)


def parse_net_config(text: str, space, *, num_classes: int | None = None) -> Arch:
    """Decode a paper-style net_config for a space (a ``SearchSpace``) and check that it fits."""
    return fit_to_space(decode_net_config(text, space, num_classes=num_classes), space)


def decode_net_config(text: str, space, *, num_classes: int | None = None) -> Arch:
    """Decode a paper-style net_config into a whole, checked network, without requiring it
    to be a path of ``space``: the space gives only the stem type, the input size, the
    stem widths a config leaves out, and the class count unless ``num_classes`` is given.
    Block ids stay unset; ``fit_to_space`` fills them where a command needs the space."""
    cfg = space.config
    entries = [parse_literal(part, source=f"net_config part {i + 1}") for i, part in enumerate(text.strip().split("|"))]
    blocks: list[ArchBlock] = []
    final_conv = None
    init_dim, head_dim = cfg.init_dim, cfg.head_dim
    for i, e in enumerate(entries):
        where = f"net_config part {i + 1}"
        if not (isinstance(e, list) and len(e) >= 2 and isinstance(e[0], list) and len(e[0]) == 2
                and all(isinstance(c, int) for c in e[0]) and isinstance(e[1], str)):
            raise DensenasError(f"{where}: expected [[in_ch, out_ch], 'op', [stack ops], n, stride], got {e!r}")
        (c_in, c_out), op = e[0], _op(e[1], where)
        if op == FINAL_CONV:
            if i != len(entries) - 1:
                raise DensenasError(f"{where}: conv1_1 must be the last part")
            final_conv = (c_in, c_out)
            continue
        if len(e) != 5 or not isinstance(e[2], list) or not all(isinstance(s, str) for s in e[2]) \
                or not isinstance(e[3], int) or not isinstance(e[4], int):
            raise DensenasError(f"{where}: expected [[in_ch, out_ch], 'op', [stack ops], n, stride], got {e!r}")
        if e[3] != len(e[2]):
            raise DensenasError(f"{where}: says {e[3]} stacked layers but lists {len(e[2])}")
        if i == 0 and cfg.stem == "mbv2" and op == MBV2_STEM_HEAD:
            init_dim, head_dim = c_in, c_out  # the stem's head layer
            continue
        blocks.append(ArchBlock(c_in, c_out, e[4], op, tuple(_op(s, f"{where}: stack op") for s in e[2])))
    arch = Arch(
        space=cfg.name,
        input_size=cfg.input_size,
        num_classes=cfg.num_classes if num_classes is None else num_classes,
        stem=cfg.stem,
        init_dim=init_dim,
        head_dim=head_dim if cfg.stem == "mbv2" else None,
        blocks=tuple(blocks),
        final_conv=final_conv,
    )
    try:
        return arch.validate()
    except DensenasError as exc:
        raise DensenasError(f"net_config: {str(exc).removeprefix('arch: ')}") from None


def try_fit(arch: Arch, space) -> tuple[Arch, str | None]:
    """``arch`` fitted to ``space`` (block ids filled in) and None, or ``arch`` unchanged
    and the reason it is not a path of the space."""
    try:
        return fit_to_space(arch, space), None
    except DensenasError as exc:
        return arch, str(exc)


def fit_to_space(arch: Arch, space) -> Arch:
    """Map each block onto a supernet block (by width and the space's edges) and check the
    ops and strides are ones the space offers; returns the arch with block ids filled in."""
    cfg = space.config
    where = f"architecture does not fit space {space.name}"
    if arch.stem != cfg.stem or arch.stem_out != space.blocks[0].ch:
        raise DensenasError(f"{where}: stem outputs {arch.stem_out} wide, the space's block 0 is {space.blocks[0].ch}")
    if arch.input_size != cfg.input_size:
        raise DensenasError(f"{where}: input size {arch.input_size}, the space's is {cfg.input_size}")
    current = 0
    fitted = []
    for i, b in enumerate(arch.blocks):
        candidates = [d for d in space.blocks[current].out_edges
                      if space.blocks[d].ch == b.out_ch and not space.blocks[d].is_final]
        if not candidates:
            raise DensenasError(f"{where}: blocks[{i}] goes {b.in_ch}->{b.out_ch} but block {current} "
                                f"(width {space.blocks[current].ch}) has no edge to a block of width {b.out_ch}")
        dst = candidates[0]
        blk = space.blocks[dst]
        if b.block_id is not None and b.block_id != dst:
            raise DensenasError(f"{where}: blocks[{i}] says block_id {b.block_id} but its widths route to block {dst}")
        if b.stride != space.edge_stride(current, dst):
            raise DensenasError(f"{where}: blocks[{i}] has stride {b.stride}, the edge {current}->{dst} has {space.edge_stride(current, dst)}")
        if b.head_op not in space.head_primitives:
            raise DensenasError(f"{where}: blocks[{i}] head op {b.head_op!r} is not a head primitive ({', '.join(space.head_primitives)})")
        bad = [op for op in b.stack_ops if op not in space.stack_primitives or op.skip]
        if bad:
            raise DensenasError(f"{where}: blocks[{i}] stack op {bad[0]!r} is not a stack primitive of the space")
        if len(b.stack_ops) > blk.num_layers:
            raise DensenasError(f"{where}: blocks[{i}] has {len(b.stack_ops)} stacked layers, block {dst} allows {blk.num_layers}")
        fitted.append(ArchBlock(b.in_ch, b.out_ch, b.stride, b.head_op, b.stack_ops, dst))
        current = dst
    if current not in space.final.in_edges:
        raise DensenasError(f"{where}: the last block (width {space.blocks[current].ch}) has no edge to the final conv")
    if cfg.final_conv_in_derived:
        expected = (space.blocks[current].ch, cfg.last_dim)
        if arch.final_conv != expected:
            raise DensenasError(f"{where}: final conv must be {list(expected)} (conv1_1), got {arch.final_conv}")
    elif arch.final_conv is not None:
        raise DensenasError(f"{where}: the space's derived networks have no final conv1_1")
    return replace(arch, blocks=tuple(fitted))
