"""The soft architecture file ``arch_params.json`` (schema ``densenas.arch_params/1``).

Raw logits in the order DESIGN.md fixes: ``betas`` per block (every block but the
final conv) over its outgoing edges, nearest first; ``head_alphas`` per routing block,
per incoming branch (nearest source first), over the head primitives; ``stack_alphas``
per routing block, per stacked layer, over the stack primitives. Search writes it every
epoch; derivation and ``predict`` read it. Plain JSON, validated against the space so a
file from another space or a diverged search (NaN) fails with the field named.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from densenas.errors import DensenasError
from densenas.fileio import read_json, write_json

if TYPE_CHECKING:
    import torch

    from densenas.nets.supernet import SuperNet
    from densenas.space import SearchSpace

ARCH_PARAMS_SCHEMA = "densenas.arch_params/1"

Vector = list[float]
Matrix = list[list[float]]


@dataclass
class ArchParams:
    """Architecture logits of one search space, as plain nested lists of floats."""

    space: str
    betas: list[Vector]
    head_alphas: list[Matrix]
    stack_alphas: list[Matrix]
    source: str = "arch_params.json"  # where it came from, for error messages

    # -- conversions -------------------------------------------------------------------

    @classmethod
    def from_supernet(cls, net: "SuperNet") -> "ArchParams":
        """Snapshot a supernet's architecture parameters (detached, on the host)."""
        return cls(
            space=net.space.name,
            betas=[p.detach().double().cpu().tolist() for p in net.betas],
            head_alphas=[p.detach().double().cpu().tolist() for p in net.head_alphas],
            stack_alphas=[p.detach().double().cpu().tolist() for p in net.stack_alphas],
        )

    def to_tensors(self, dtype: "torch.dtype | None" = None) -> tuple[list["torch.Tensor"], ...]:
        """(betas, head_alphas, stack_alphas) as float tensors shaped like the supernet's."""
        import torch

        dtype = dtype or torch.float32
        n_head = max((len(row) for m in self.head_alphas for row in m), default=0)
        n_stack = max((len(row) for m in self.stack_alphas for row in m), default=0)
        betas = [torch.tensor(b, dtype=dtype) for b in self.betas]
        heads = [torch.tensor(m, dtype=dtype).reshape(len(m), n_head) for m in self.head_alphas]
        stacks = [torch.tensor(m, dtype=dtype).reshape(len(m), n_stack) for m in self.stack_alphas]
        return betas, heads, stacks

    def load_into(self, net: "SuperNet") -> None:
        """Copy these logits into a supernet of the same space (shapes checked first)."""
        import torch

        self.validate(net.space)
        with torch.no_grad():
            for params, values in ((net.betas, self.betas), (net.head_alphas, self.head_alphas),
                                   (net.stack_alphas, self.stack_alphas)):
                for p, v in zip(params, values):
                    p.copy_(torch.tensor(v, dtype=p.dtype).reshape(p.shape))

    # -- checks --------------------------------------------------------------------------

    def validate(self, space: "SearchSpace") -> "ArchParams":
        """Shapes must match ``space`` exactly and every logit must be finite; the error
        names the file, the field and the index."""
        src = self.source
        if self.space != space.name:
            raise DensenasError(f"{src}: field space: written for space {self.space!r}, not {space.name!r}")
        n_head, n_stack = len(space.head_primitives), len(space.stack_primitives)
        _expect_len(self.betas, len(space.blocks) - 1, f"{src}: field betas", "blocks (every block but the final conv)")
        for i, (row, b) in enumerate(zip(self.betas, space.blocks)):
            _expect_len(row, len(b.out_edges), f"{src}: field betas[{i}]", "outgoing edges")
            _finite(row, f"{src}: field betas[{i}]")
        routing = space.routing_blocks
        _expect_len(self.head_alphas, len(routing), f"{src}: field head_alphas", "routing blocks")
        _expect_len(self.stack_alphas, len(routing), f"{src}: field stack_alphas", "routing blocks")
        for n, b in enumerate(routing):
            _matrix(self.head_alphas[n], len(b.in_edges), n_head, f"{src}: field head_alphas[{n}]", "branches")
            _matrix(self.stack_alphas[n], b.num_layers, n_stack, f"{src}: field stack_alphas[{n}]", "layers")
        return self

    def check_finite(self) -> None:
        """Refuse non-finite logits (a diverged search) before they reach a file."""
        for i, row in enumerate(self.betas):
            _finite(row, f"{self.source}: field betas[{i}]")
        for name, mats in (("head_alphas", self.head_alphas), ("stack_alphas", self.stack_alphas)):
            for n, m in enumerate(mats):
                for j, row in enumerate(m):
                    _finite(row, f"{self.source}: field {name}[{n}][{j}]")

    # -- files -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": ARCH_PARAMS_SCHEMA,
            "space": self.space,
            "betas": self.betas,
            "head_alphas": self.head_alphas,
            "stack_alphas": self.stack_alphas,
        }

    def save(self, path: str | Path) -> Path:
        """Write atomically (search rewrites it every epoch; a kill leaves a whole file)."""
        path = Path(path)
        self.check_finite()
        write_json(path, self.to_dict())
        return path


def arch_params_from_dict(data: Any, *, source: str = "arch_params.json") -> ArchParams:
    """Parse the JSON form; types and nesting are checked here, shapes by ``validate``."""
    if not isinstance(data, dict):
        raise DensenasError(f"{source}: not a JSON object")
    schema = data.get("schema")
    if schema != ARCH_PARAMS_SCHEMA:
        raise DensenasError(f"{source}: field schema: expected {ARCH_PARAMS_SCHEMA!r}, got {schema!r}")
    space = data.get("space")
    if not isinstance(space, str) or not space:
        raise DensenasError(f"{source}: field space: expected the space's name, got {space!r}")
    for name in ("betas", "head_alphas", "stack_alphas"):
        if name not in data:
            raise DensenasError(f"{source}: field {name} is missing")
    betas = [_vector(row, f"{source}: field betas[{i}]") for i, row in enumerate(_list(data["betas"], f"{source}: field betas"))]
    mats = {}
    for name in ("head_alphas", "stack_alphas"):
        blocks = _list(data[name], f"{source}: field {name}")
        mats[name] = [
            [_vector(row, f"{source}: field {name}[{n}][{j}]") for j, row in enumerate(_list(m, f"{source}: field {name}[{n}]"))]
            for n, m in enumerate(blocks)
        ]
    params = ArchParams(space, betas, mats["head_alphas"], mats["stack_alphas"], source=source)
    params.check_finite()
    return params


def load_arch_params(path: str | Path) -> ArchParams:
    """Read and type-check ``arch_params.json``; call ``.validate(space)`` before use."""
    return arch_params_from_dict(read_json(path, what="architecture-parameter file"), source=str(path))


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise DensenasError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _vector(value: Any, where: str) -> Vector:
    out = []
    for k, x in enumerate(_list(value, where)):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise DensenasError(f"{where}[{k}]: expected a number, got {x!r}")
        try:
            out.append(float(x))
        except OverflowError:  # an integer beyond float range
            raise DensenasError(f"{where}[{k}]: logit is an integer beyond float range") from None
    return out


def _finite(row: Vector, where: str) -> None:
    for k, x in enumerate(row):
        if not math.isfinite(x):
            raise DensenasError(f"{where}[{k}]: logit is {x} (not finite); the search diverged")


def _expect_len(seq: list, n: int, where: str, what: str) -> None:
    if len(seq) != n:
        raise DensenasError(f"{where}: expected {n} {what}, got {len(seq)}")


def _matrix(m: Matrix, rows: int, cols: int, where: str, what: str) -> None:
    got_cols = {len(r) for r in m}
    if len(m) != rows or got_cols - {cols}:
        shown = "/".join(str(c) for c in sorted(got_cols)) if got_cols else str(cols)
        raise DensenasError(f"{where}: expected {rows} {what} x {cols} ops, got {len(m)} x {shown}")
    for j, row in enumerate(m):
        _finite(row, f"{where}[{j}]")
