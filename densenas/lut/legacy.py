"""Import the paper's latency lists (``lat_list_*``) into keyed LUTs.

A legacy list is a nested Python literal indexed by position:
``[stem, blocks, final_conv_branches, classifier]`` with ``blocks[i] = [head_branches,
stack_layers]`` for routing block i+1. It means nothing without the space that made it,
so every number is mapped here onto the op signature it measured in the ported space;
after import the rows stand on their own. The file is parsed as data
(``densenas.literal.parse_literal``), never evaluated.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from densenas.errors import DensenasError
from densenas.literal import parse_literal
from densenas.lut.store import DEFAULT_CALIBRATION, LatencyTable, LutRow
from densenas.signature import OpSignature
from densenas.space.graph import SearchSpace

LEGACY_BACKEND = "legacy-densenas"
LEGACY_DEVICE = "NVIDIA TITAN Xp"
LEGACY_BATCH = 32
PAPER_PROTOCOL = {
    "kind": "paper",
    "runs": 5000,
    "discarded": 100,
    "statistic": "mean of time.time() deltas per forward",
    "deduplicated": False,
}
# the note on rows the paper's list has no number for, charged 0 ms
UNMEASURED_NOTE = "not in the paper's list: charged 0 ms"
PAPER_TIMING_SCOPE = (
    "the DenseNAS code release's measurement: eager PyTorch forward of each op instance on CUDA, "
    "host wall clock (time.time()), mean of a fixed count of runs"
)


@dataclass
class ImportSummary:
    """What an import mapped, for the CLI and tests."""

    source: str
    space: str
    numbers: int = 0  # numbers read from the list
    rows: int = 0
    averaged: int = 0  # rows that average several numbers
    extra: list[str] = field(default_factory=list)  # rows the ported space never uses
    missing: list[str] = field(default_factory=list)  # signatures the space needs, not in the list
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "space": self.space,
            "numbers": self.numbers,
            "rows": self.rows,
            "averaged_rows": self.averaged,
            "extra_rows": self.extra,
            "missing": self.missing,
            "notes": self.notes,
        }


def _number(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or value < 0:
        raise DensenasError(f"{where}: expected a latency in ms, got {value!r}")
    return float(value)


def _list(value: Any, where: str, length: int | None = None, *, at_least: bool = False) -> list:
    if not isinstance(value, list):
        raise DensenasError(f"{where}: expected a list, got {type(value).__name__}")
    if length is not None:
        ok = len(value) >= length if at_least else len(value) == length
        if not ok:
            need = f"at least {length}" if at_least else str(length)
            raise DensenasError(f"{where}: has {len(value)} entries, the space needs {need}")
    return value


class _Collector:
    """Gathers every number by signature; several numbers for one signature are averaged."""

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.values: dict[str, list[float]] = {}
        self.sigs: dict[str, OpSignature] = {}
        self.notes: dict[str, str] = {}

    def add(self, sig: OpSignature, value: float, note: str = "") -> None:
        sig = sig.with_run(self.batch, "fp32")
        self.values.setdefault(sig.key(), []).append(value)
        self.sigs[sig.key()] = sig
        if note:
            self.notes[sig.key()] = note


def import_legacy(
    path: str | Path,
    space: SearchSpace,
    *,
    batch: int = LEGACY_BATCH,
    device: str = LEGACY_DEVICE,
    name: str | None = None,
) -> tuple[LatencyTable, ImportSummary]:
    """Map a legacy latency list onto the signatures of ``space`` (see the module doc)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DensenasError(f"{path}: cannot read legacy latency list ({exc})") from None
    data = parse_literal(text, source=str(path))
    src = str(path)
    reg10 = "reg10" in path.name
    top = _list(data, src, 4)
    stem_ms, blocks, finals, classifier_ms = top
    col = _Collector(batch)
    summary = ImportSummary(source=src, space=space.name)

    # The stem: one number for the whole stem; for MBV2 it includes the first mbconv_k3_t1.
    stem_sigs = space.stem_signatures()
    stem_value = _number(stem_ms, f"{src}: [0] (stem)")
    col.add(stem_sigs[0], stem_value, "paper: whole stem" + (" including the first mbconv_k3_t1" if len(stem_sigs) > 1 else ""))
    for s in stem_sigs[1:]:
        col.add(s, 0.0, f"paper: included in {stem_sigs[0].op} (the list times the stem as one)")
    summary.numbers += 1

    routing = space.routing_blocks
    _list(blocks, f"{src}: [1] (blocks)", len(routing))
    for i, (block, entry) in enumerate(zip(routing, blocks)):
        where = f"{src}: [1][{i}] (block {block.id})"
        heads, stacks = _list(entry, where, 2)
        _list(heads, f"{where} head branches", len(block.in_edges))
        for j, (src_block, branch) in enumerate(zip(block.in_edges, heads)):
            bw = f"{where} head branch {j} (from block {src_block})"
            _list(branch, bw, len(space.head_primitives))
            for op, v in zip(space.head_primitives, branch):
                col.add(space.head_signature(block.id, src_block, op), _number(v, bw))
                summary.numbers += 1
        _list(stacks, f"{where} stack layers", block.num_layers, at_least=True)
        if len(stacks) > block.num_layers:
            summary.notes.append(
                f"block {block.id}: the list has {len(stacks)} stacked layers, the ported space {block.num_layers}; "
                f"imported as rows ({block.ch}->{block.ch} at {block.fm}x{block.fm}) the space does not use"
            )
        for k, layer in enumerate(stacks):
            lw = f"{where} stack layer {k}"
            _list(layer, lw, len(space.stack_primitives))
            for op, v in zip(space.stack_primitives, layer):
                note = ""
                if reg10 and op == "skip_connect":
                    note = f"reg10: charged a tenth of {space.stack_primitives[0]}, not measured"
                col.add(space.stack_signature(block.id, op), _number(v, lw), note)
                summary.numbers += 1

    final = space.final
    _list(finals, f"{src}: [2] (final conv branches)", len(final.in_edges))
    for j, (src_block, v) in enumerate(zip(final.in_edges, finals)):
        col.add(space.final_signature(src_block), _number(v, f"{src}: [2][{j}] (final conv from block {src_block})"))
        summary.numbers += 1
    classifier = space.classifier_signature()
    col.add(classifier, _number(classifier_ms, f"{src}: [3] (classifier)"))
    summary.numbers += 1
    # Derived networks without a final conv (ResNet) classify from their last block's width;
    # the list timed the classifier from the supernet's width only, so the others are
    # charged nothing, as rows that say so (a LUT is complete for its space).
    unmeasured = [sig for sig in space.unique_signatures(batch, "fp32")
                  if sig.op == "classifier" and sig.key() not in col.values]
    for sig in unmeasured:
        col.add(sig, 0.0, f"{UNMEASURED_NOTE} (it timed the classifier from {classifier.c_in} channels only)")

    table = LatencyTable(_legacy_meta(path, text, space, batch=batch, device=device, name=name, reg10=reg10), source=src)
    for key, values in col.values.items():
        mean = sum(values) / len(values)
        note = col.notes.get(key, "")
        if len(values) > 1:
            note = (note + "; " if note else "") + f"paper: mean of {len(values)} measurements of this signature"
            summary.averaged += 1
        table.add(
            LutRow(col.sigs[key], median_ms=mean, mean_ms=mean, iqr_ms=0.0, p10_ms=mean, p90_ms=mean,
                   samples=0, rounds=0, count=len(values), note=note)
        )
    needed = {s.key() for s in space.unique_signatures(batch, "fp32")}
    summary.rows = len(table.rows)
    summary.extra = sorted(k for k in table.rows if k not in needed)
    summary.missing = sorted(k for k in needed if k not in table.rows)
    if summary.extra:
        summary.notes.append(f"{len(summary.extra)} rows are measured shapes the ported space does not use")
    if unmeasured:
        table.meta["note"] += (f" The derived networks' classifiers from {', '.join(str(s.c_in) for s in unmeasured)} "
                               "channels are not in the list: their rows are 0 ms, noted so.")
        summary.notes.append(
            f"{len(unmeasured)} classifier rows the space's derived networks use are not in the list and are "
            "charged 0 ms: " + ", ".join(sig.key() for sig in unmeasured)
        )
    if summary.missing:
        summary.notes.append(
            f"{len(summary.missing)} signatures the space uses are not in the list (the paper never measured them): "
            + ", ".join(summary.missing)
        )
    if reg10:
        summary.notes.append("reg10 list: skip_connect rows are a tenth of the first stack op, not measurements")
    table.meta["import_notes"] = list(summary.notes)
    return table, summary


def _legacy_meta(path: Path, text: str, space: SearchSpace, *, batch: int, device: str, name: str | None, reg10: bool) -> dict[str, Any]:
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    note = (
        f"Imported from the DenseNAS code release's latency list {path.name} (Apache-2.0): measured on an "
        f"{device} at batch {batch}, fp32, {space.config.num_classes} classes, {space.input_size}x{space.input_size} input. "
        "The stem number covers the whole stem (for MBV2 with the first mbconv_k3_t1); stacked layers sharing a "
        "signature are averaged (count). No per-call overhead was separated out. The classifier was timed only "
        f"from {space.config.last_dim} channels to {space.config.num_classes} classes; one to another class count "
        "is charged as this one."
    )
    if reg10:
        note += " reg10: skip_connect rows are a tenth of the first stack op (a regulariser, not a measurement)."
    return {
        "lut_version": 1,
        "name": name or f"{space.name}/paper-titanxp" + ("-reg10" if reg10 else ""),
        "spaces": [space.name],
        "backend": LEGACY_BACKEND,
        "backend_version": None,
        "device": device,
        "device_kind": "cuda",
        "threads": None,
        "precision": "fp32",
        "batch": batch,
        "input_size": space.input_size,
        "num_classes": space.config.num_classes,
        "protocol": dict(PAPER_PROTOCOL),
        "timing_scope": PAPER_TIMING_SCOPE,
        "versions": {},
        "date": now,
        "updated": now,
        "host": None,
        "overhead_ms": 0.0,
        "overhead": None,
        "calibration": dict(DEFAULT_CALIBRATION),
        "source": {"file": path.name, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()},
        "note": note,
    }
