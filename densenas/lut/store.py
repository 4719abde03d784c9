"""Latency lookup tables: one self-describing JSON file per LUT, rows keyed by op signature.

A LUT says what it measured (provenance in ``meta``: backend, device, threads, batch,
precision, protocol, versions, date, per-call overhead) and holds one row of robust
statistics per op signature. Loading parses JSON as data and validates every field, so
a hand-edited, truncated or foreign file fails with a message naming the file and the
field; nothing in a LUT can run code.

Shipped LUTs live under ``luts/<space>/<backend>-<device>@<N>.json`` and are named
``<space>/<backend>-<device>[@N]`` (newest version when ``@N`` is left out).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from densenas import paths
from densenas.choices import Precision
from densenas.errors import DensenasError
from densenas.fileio import read_text, write_text
from densenas.lut.meta import Calibration, Deployment, Provenance, Refinement, validated
from densenas.signature import OpSignature, OpSpec

if TYPE_CHECKING:
    import pandas as pd

    from densenas.space.graph import SearchSpace

LUT_SCHEMA = "densenas.lut/1"
SCHEMA_PREFIX = "densenas.lut/"
DEFAULT_CALIBRATION: dict[str, float] = {"network_offset_ms": 0.0}

# Provenance fields that must agree before two runs' rows may share one file.
FINGERPRINT_FIELDS = ("backend", "backend_version", "device", "threads", "precision", "batch", "input_size")

_SIG_FIELDS = ("op", "c_in", "c_out", "stride", "h", "w", "batch", "dtype")
_STAT_FIELDS = ("median_ms", "mean_ms", "iqr_ms", "p10_ms", "p90_ms")
_SHIPPED_NAME = re.compile(r"^(?P<space>[A-Za-z0-9_.-]+)/(?P<lut>[A-Za-z0-9_.-]+?)(?:@(?P<version>\d+))?$")
_SHIPPED_FILE = re.compile(r"^(?P<lut>[A-Za-z0-9_.-]+?)@(?P<version>\d+)\.json$")
_MAX_LISTED = 5


@dataclass(frozen=True)
class LutRow:
    """The measured latency of one op signature (milliseconds per call).

    ``count`` is how many measurements were averaged into the row (legacy lists measured
    one signature once per stacked layer); ``measured_at`` is when the row was measured,
    so a resumed run can be shown not to have re-measured it; ``host_busy`` how many CPUs
    other processes kept busy meanwhile (None when unknown), the usual cause of bad rows.
    ``context_ms`` is the op's cost fitted inside whole networks, net of the per-call
    overhead (None until a refinement fits it; see ``densenas.cost.latency``).
    """

    signature: OpSignature
    median_ms: float
    mean_ms: float
    iqr_ms: float
    p10_ms: float
    p90_ms: float
    samples: int
    rounds: int = 0
    count: int = 1
    note: str = ""
    measured_at: str = ""
    host_busy: float | None = None
    context_ms: float | None = None

    @property
    def key(self) -> str:
        return self.signature.key()

    @classmethod
    def from_measurement(
        cls, sig: OpSignature, m: Any, *, measured_at: str = "", note: str = "", host_busy: float | None = None
    ) -> "LutRow":
        """A row from a ``profilers.stats.Measurement`` (duck-typed: densenas does not need its class)."""
        return cls(
            signature=sig,
            median_ms=float(m.median_ms),
            mean_ms=float(m.mean_ms),
            iqr_ms=float(m.iqr_ms),
            p10_ms=float(m.p10_ms),
            p90_ms=float(m.p90_ms),
            samples=int(m.samples),
            rounds=int(m.rounds),
            measured_at=measured_at,
            note=note,
            host_busy=host_busy,
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key, **self.signature.to_dict()}
        for f in fields(self):
            if f.name != "signature":
                d[f.name] = getattr(self, f.name)
        if not d["note"]:
            del d["note"]
        for optional in ("measured_at", "host_busy", "context_ms"):
            if d[optional] in ("", None):
                del d[optional]
        return d

    @classmethod
    def from_dict(cls, d: Any, *, where: str) -> "LutRow":
        """Validate one row of a LUT file; ``where`` names the file and row for errors."""
        if not isinstance(d, dict):
            raise DensenasError(f"{where}: a row must be a JSON object, got {type(d).__name__}")
        for name in _SIG_FIELDS + _STAT_FIELDS + ("samples",):
            if name not in d:
                raise DensenasError(f"{where}: field {name!r} is missing")
        op = d["op"]
        try:
            OpSpec(op)
        except DensenasError as exc:
            raise DensenasError(f"{where}: field 'op': {exc}") from None
        ints: dict[str, int] = {}
        for name in ("c_in", "c_out", "stride", "h", "w", "batch"):
            ints[name] = _int_field(d[name], f"{where}: field {name!r}", minimum=1)
        Precision.parse(d["dtype"], f"{where}: field 'dtype'")
        sig = OpSignature(op, ints["c_in"], ints["c_out"], ints["stride"], ints["h"], ints["w"], ints["batch"], d["dtype"])
        if "key" in d and d["key"] != sig.key():
            raise DensenasError(f"{where}: field 'key' is {d['key']!r} but the row's fields give {sig.key()!r}")
        stats = {name: _ms_field(d[name], f"{where}: field {name!r}") for name in _STAT_FIELDS}
        note = d.get("note", "")
        measured_at = d.get("measured_at", "")
        if not isinstance(note, str) or not isinstance(measured_at, str):
            raise DensenasError(f"{where}: fields 'note' and 'measured_at' must be strings")
        host_busy = d.get("host_busy")
        if host_busy is not None and (
            not isinstance(host_busy, (int, float)) or isinstance(host_busy, bool)
            or not _finite(host_busy) or host_busy < 0
        ):
            raise DensenasError(f"{where}: field 'host_busy' must be a finite non-negative number of CPUs, got {host_busy!r}")
        context_ms = d.get("context_ms")
        if context_ms is not None:
            context_ms = _ms_field(context_ms, f"{where}: field 'context_ms'")
        return cls(
            signature=sig,
            samples=_int_field(d["samples"], f"{where}: field 'samples'", minimum=0),
            rounds=_int_field(d.get("rounds", 0), f"{where}: field 'rounds'", minimum=0),
            count=_int_field(d.get("count", 1), f"{where}: field 'count'", minimum=1),
            note=note,
            measured_at=measured_at,
            host_busy=host_busy,
            context_ms=context_ms,
            **stats,
        )


def _int_field(value: Any, where: str, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise DensenasError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def _finite(value: int | float) -> bool:
    """math.isfinite without the OverflowError an integer beyond float range raises."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _ms_field(value: Any, where: str) -> float:
    """A latency: a finite, non-negative number (0 only where a row's time is counted elsewhere)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not _finite(value) or value < 0:
        raise DensenasError(f"{where} must be a finite non-negative number of milliseconds, got {value!r}")
    return float(value)


class LatencyTable:
    """A LUT in memory: provenance ``meta`` and ``rows`` keyed by ``OpSignature.key()``."""

    def __init__(self, meta: Mapping[str, Any] | None = None, rows: Iterable[LutRow] = (), *, source: str = "<lut>") -> None:
        self.meta: dict[str, Any] = {"schema": LUT_SCHEMA, "lut_version": 1, **(meta or {})}
        self.meta["schema"] = LUT_SCHEMA
        self.rows: dict[str, LutRow] = {}
        self.source = source
        for row in rows:
            self.add(row)

    # -- provenance ------------------------------------------------------------------

    @property
    def provenance(self) -> Provenance:
        """``meta`` as a validated, typed model (DensenasError naming the field when a
        program has put a bad value into it)."""
        return validated(Provenance, self.meta, source=self.source, field="meta")

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or Path(self.source).stem)

    @property
    def backend(self) -> str:
        return str(self.meta.get("backend", "unknown"))

    @property
    def device(self) -> str:
        return str(self.meta.get("device", "unknown"))

    @property
    def batch(self) -> int:
        return int(self.meta.get("batch", 1))

    @property
    def precision(self) -> str:
        return str(self.meta.get("precision", "fp32"))

    dtype = precision

    @property
    def input_size(self) -> int | None:
        value = self.meta.get("input_size")
        return int(value) if value else None

    @property
    def lut_version(self) -> int:
        return int(self.meta.get("lut_version", 1))

    @property
    def overhead_ms(self) -> float:
        """The backend's fixed per-call cost, to count once per network (0.0 if unknown)."""
        return float(self.meta.get("overhead_ms") or 0.0)

    @property
    def calibration(self) -> Calibration:
        """The stored calibration (one that changes nothing when there is none)."""
        return self.provenance.calibration or Calibration()

    @calibration.setter
    def calibration(self, value: Calibration | Mapping[str, Any]) -> None:
        if not isinstance(value, Calibration):
            value = validated(Calibration, dict(value), source=self.source, field="meta.calibration")
        self.meta["calibration"] = value.to_lut()

    @property
    def refinement(self) -> Refinement | None:
        """How the rows' in-context costs were fitted; None for a LUT of isolated times only."""
        return self.provenance.refinement

    @refinement.setter
    def refinement(self, value: Refinement | Mapping[str, Any] | None) -> None:
        if value is None:
            self.meta.pop("refinement", None)
            return
        if not isinstance(value, Refinement):
            value = validated(Refinement, dict(value), source=self.source, field="meta.refinement")
        self.meta["refinement"] = value.to_lut()

    @property
    def deployment(self) -> Deployment | None:
        """How whole networks run for this LUT; None for a LUT from before one was recorded."""
        return self.provenance.deployment

    @deployment.setter
    def deployment(self, value: Deployment | Mapping[str, Any]) -> None:
        if not isinstance(value, Deployment):
            value = validated(Deployment, dict(value), source=self.source, field="meta.deployment")
        self.meta["deployment"] = value.to_lut()

    def fingerprint(self) -> dict[str, Any]:
        """The provenance fields that must match before rows from two runs may be mixed."""
        return {f: self.meta.get(f) for f in FINGERPRINT_FIELDS}

    # -- rows ------------------------------------------------------------------------

    def __contains__(self, sig: OpSignature) -> bool:
        return sig.key() in self.rows

    def get(self, sig: OpSignature) -> LutRow | None:
        return self.rows.get(sig.key())

    def row(self, sig: OpSignature) -> LutRow:
        """The row of ``sig`` (for a classifier, see ``classifier_stand_in``);
        DensenasError with the command that measures it when absent."""
        row = self.rows.get(sig.key()) or self.classifier_stand_in(sig)
        if row is None:
            raise DensenasError(f"LUT {self.source} has no row for op {sig}; profile it with `{self.fill_command()}`")
        return row

    def classifier_stand_in(self, sig: OpSignature) -> LutRow | None:
        """For a classifier to a class count this LUT has no row for, the row of the same
        classifier (input width, feature map, batch, precision) to the nearest class
        count it has: a LUT is profiled at its space's class count, a search's data and a
        retrained network have their own. None for any other op or when there is none."""
        if sig.op != "classifier" or sig.key() in self.rows:
            return None
        same = [r for r in self.rows.values()
                if r.signature.op == "classifier" and replace(r.signature, c_out=sig.c_out) == sig]
        return min(same, key=lambda r: (abs(r.signature.c_out - sig.c_out), r.signature.c_out), default=None)

    def charge_notes(self, signatures: Iterable[OpSignature]) -> list[str]:
        """What a prediction over ``signatures`` should say about how some are charged: a
        classifier charged as one to another class count, a row of 0 ms and why."""
        notes: list[str] = []
        for sig in dict.fromkeys(signatures):
            stand_in = self.classifier_stand_in(sig)
            row = self.rows.get(sig.key())
            if stand_in is not None:
                zero = f"; that row is 0 ms: {stand_in.note}" if stand_in.median_ms == 0.0 and stand_in.note else ""
                notes.append(f"{sig} is charged as {stand_in.signature} (the LUT has no row for "
                             f"{sig.c_out} classes){zero}")
            elif row is not None and row.median_ms == 0.0 and row.note:
                notes.append(f"{sig} is charged 0 ms: {row.note}")
        return notes

    def latency_ms(self, sig: OpSignature) -> float:
        """The isolated median of ``sig`` (per-call overhead included)."""
        return self.row(sig).median_ms

    def missing(self, signatures: Iterable[OpSignature]) -> list[OpSignature]:
        seen: set[str] = set()
        out: list[OpSignature] = []
        for sig in signatures:
            k = sig.key()
            if k not in self.rows and k not in seen and self.classifier_stand_in(sig) is None:
                seen.add(k)
                out.append(sig)
        return out

    def require(
        self,
        space_or_signatures: "SearchSpace | Iterable[OpSignature]",
        *,
        batch: int | None = None,
        precision: str | None = None,
        input_size: int | None = None,
    ) -> None:
        """Refuse (DensenasError) unless this LUT was measured at the batch, precision and
        input size asked for and has a row for every signature; the message names the
        difference, or the missing ops and the command that fills them."""
        from densenas.space.graph import SearchSpace

        space = space_or_signatures if isinstance(space_or_signatures, SearchSpace) else None
        if batch is not None and batch != self.batch:
            raise DensenasError(f"LUT {self.source} was measured at batch {self.batch}, you asked for batch {batch}")
        if precision is not None and precision != self.precision:
            raise DensenasError(
                f"LUT {self.source} was measured at precision {self.precision}, you asked for precision {precision}"
            )
        if space is not None and input_size is None:
            input_size = space.input_size
        if input_size is not None and self.input_size is not None and input_size != self.input_size:
            raise DensenasError(
                f"LUT {self.source} was measured for {self.input_size}x{self.input_size} inputs, "
                f"you asked for {input_size}x{input_size}"
            )
        if space is not None:
            sigs = space.unique_signatures(self.batch if batch is None else batch, precision or self.precision)
        else:
            sigs = list(space_or_signatures)  # type: ignore[arg-type]
        missing = self.missing(sigs)
        if not missing:
            return
        listed = ", ".join(str(s) for s in missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        where = space_arg(space) if space is not None else "SPACE"
        raise DensenasError(
            f"LUT {self.source} lacks {len(missing)} of the {len(set(s.key() for s in sigs))} ops needed: "
            f"{listed}{more}; fill them with `{self.fill_command(where)}`"
        )

    def coverage(self, space: "SearchSpace", *, batch: int | None = None, precision: str | None = None) -> dict[str, Any]:
        """What ``space`` needs that this LUT lacks (`lut check`): ``complete``, ``needed``,
        ``missing`` keys, and the fill command. A batch or precision other than the
        LUT's is refused (DensenasError), since no row could match."""
        self.require([], batch=batch, precision=precision)
        needed = space.unique_signatures(self.batch, self.precision)
        missing = self.missing(needed)
        result: dict[str, Any] = {
            "lut": self.source,
            "space": space.name,
            "complete": not missing,
            "needed": len(needed),
            "missing": [m.key() for m in missing],
        }
        if missing:
            result["fill_command"] = self.fill_command(space_arg(space))
            if self.input_size and self.input_size != space.input_size:
                result["hint"] = (
                    f"the LUT was measured for {self.input_size}x{self.input_size} inputs, "
                    f"{space.name} takes {space.input_size}x{space.input_size}"
                )
        return result

    def fill_command(self, space: str = "SPACE") -> str:
        """The ``densenas profile`` command that adds missing rows to this LUT's file; for
        a backend this environment has not installed (an imported paper list, a plug-in
        not installed here) one that measures the space into a new LUT on a built-in one."""
        from densenas.profilers import list_profilers

        if self.backend not in list_profilers():
            builtin = "torch-cuda" if self.meta.get("device_kind") == "cuda" else "torch-cpu"
            parts = ["densenas profile", f"--space {space}", f"--backend {builtin}", f"--batch {self.batch}"]
            return " ".join(parts + ([f"--precision {self.precision}"] if self.precision != "fp32" else []))
        parts = ["densenas profile", f"--space {space}", f"--backend {self.backend}", f"--batch {self.batch}"]
        if self.precision != "fp32":
            parts.append(f"--precision {self.precision}")
        if self.meta.get("threads"):
            parts.append(f"--threads {self.meta['threads']}")
        parts += [f"--lut {self.source}", "--resume"]
        return " ".join(parts)

    def to_frame(self) -> "pd.DataFrame":
        """The rows as a pandas DataFrame, one per op signature (``densenas.lut.frames``)."""
        from densenas.lut.frames import table_to_frame

        return table_to_frame(self)

    @classmethod
    def from_frame(cls, df: "pd.DataFrame", meta: Mapping[str, Any] | None = None, *,
                   source: str = "<frame>") -> "LatencyTable":
        """A LUT from a ``to_frame`` DataFrame, every row validated (``densenas.lut.frames``)."""
        from densenas.lut.frames import table_from_frame

        return table_from_frame(df, meta, source=source)

    def add(self, row: LutRow) -> None:
        if not isinstance(row, LutRow):
            raise TypeError(f"LatencyTable.add takes a LutRow, got {type(row).__name__}")
        self.rows[row.key] = row

    # -- files -----------------------------------------------------------------------

    def to_json_dict(self) -> dict[str, Any]:
        meta = {k: v for k, v in self.meta.items() if k != "schema"}
        provenance = self.provenance
        meta["calibration"] = (provenance.calibration or Calibration()).to_lut()
        if provenance.refinement is not None:
            meta["refinement"] = provenance.refinement.to_lut()
        meta["rows"] = len(self.rows)
        return {
            "schema": LUT_SCHEMA,
            "meta": meta,
            "rows": [self.rows[k].to_dict() for k in sorted(self.rows)],
        }

    def dumps(self) -> str:
        """JSON text: provenance indented, one row per line, rows sorted by key, so two
        versions of a LUT diff line by line."""
        d = self.to_json_dict()
        meta = json.dumps(d["meta"], indent=2, allow_nan=False)
        rows = ",\n".join("    " + json.dumps(r, allow_nan=False) for r in d["rows"])
        body = f"[\n{rows}\n  ]" if rows else "[]"
        meta = meta.replace("\n", "\n  ")
        return f'{{\n  "schema": {json.dumps(LUT_SCHEMA)},\n  "meta": {meta},\n  "rows": {body}\n}}\n'

    def save(self, path: str | Path) -> Path:
        """Write atomically: a kill at any moment leaves the old file or the new one."""
        path = Path(path)
        write_text(path, self.dumps())
        self.source = str(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        return cls.loads(read_text(path, what="LUT file"), source=str(Path(path)))

    @classmethod
    def loads(cls, text: str, *, source: str = "<lut>") -> "LatencyTable":
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise DensenasError(
                f"{source}: not a valid LUT file (truncated or corrupt JSON at line {exc.lineno} "
                f"column {exc.colno}: {exc.msg})"
            ) from None
        except RecursionError:
            raise DensenasError(f"{source}: not a valid LUT file (JSON nested too deeply)") from None
        except ValueError as exc:
            raise DensenasError(f"{source}: not a valid LUT file ({exc})") from None
        return cls.from_json_dict(data, source=source)

    @classmethod
    def from_json_dict(cls, data: Any, *, source: str = "<lut>") -> "LatencyTable":
        if not isinstance(data, dict):
            raise DensenasError(f"{source}: a LUT file must hold a JSON object, got {type(data).__name__}")
        schema = data.get("schema")
        if schema is None:
            raise DensenasError(f"{source}: field 'schema' is missing; is this a densenas LUT? (expected {LUT_SCHEMA!r})")
        if schema != LUT_SCHEMA:
            hint = " (written by a newer densenas; upgrade it)" if str(schema).startswith(SCHEMA_PREFIX) else ""
            raise DensenasError(f"{source}: field 'schema' is {schema!r}; this densenas reads {LUT_SCHEMA!r}{hint}")
        meta = data.get("meta")
        if not isinstance(meta, dict):
            raise DensenasError(f"{source}: field 'meta' must be a JSON object")
        validated(Provenance, {k: v for k, v in meta.items() if k not in ("schema", "rows")}, source=source, field="meta")
        rows_data = data.get("rows")
        if not isinstance(rows_data, list):
            raise DensenasError(f"{source}: field 'rows' must be a JSON list")
        table = cls(meta={k: v for k, v in meta.items() if k != "rows"}, source=source)
        for i, rd in enumerate(rows_data):
            row = LutRow.from_dict(rd, where=f"{source}: rows[{i}]")
            if row.key in table.rows:
                raise DensenasError(f"{source}: rows[{i}]: duplicate row for {row.key!r}")
            table.add(row)
        if "rows" in meta and meta["rows"] != len(rows_data):
            raise DensenasError(f"{source}: field 'meta.rows' says {meta['rows']} rows but the file holds {len(rows_data)}")
        return table

    def __repr__(self) -> str:
        return f"LatencyTable({self.source!r}, backend={self.backend!r}, device={self.device!r}, rows={len(self.rows)})"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in a LUT")


def fingerprint_differences(have: Mapping[str, Any], want: Mapping[str, Any], *, have_name: str, want_name: str) -> list[str]:
    """Human-readable differences of two fingerprints ("batch: 1 in a.json, 8 in this run")."""
    out = []
    for f in FINGERPRINT_FIELDS:
        a, b = have.get(f), want.get(f)
        if a is not None and b is not None and a != b:
            out.append(f"{f} is {a} in {have_name} but {b} in {want_name}")
    return out


def space_arg(space: "SearchSpace") -> str:
    from densenas.space import shipped_spaces

    shipped = shipped_spaces().get(space.name)
    if shipped is not None and Path(space.source).resolve() == shipped.resolve():
        return space.name
    return space.source


# -- shipped LUTs --------------------------------------------------------------------


def device_slug(device_kind: str, device_name: str) -> str:
    """A short device tag for a LUT name: "cpu" for any CPU, else the GPU model ("h100")."""
    if device_kind == "cpu":
        return "cpu"
    name = device_name.lower().replace("nvidia", "").replace("geforce", "")
    m = re.search(r"\b([a-z]{0,4}\d{2,4}[a-z]*)\b", name)
    if m:
        return m.group(1)
    slug = re.sub(r"[^a-z0-9]+", "", name)
    return slug[:16] or "gpu"


def lut_basename(backend: str, slug: str) -> str:
    """``onnxruntime`` on "cpu" -> ``onnxruntime-cpu``; ``torch-cpu`` stays ``torch-cpu``."""
    return backend if backend.endswith(f"-{slug}") else f"{backend}-{slug}"


def _shipped_versions(luts_dir: Path, space: str, lut: str) -> dict[int, Path]:
    out: dict[int, Path] = {}
    folder = luts_dir / space
    if folder.is_dir():
        for p in folder.glob(f"{lut}@*.json"):
            m = _SHIPPED_FILE.match(p.name)
            if m and m.group("lut") == lut:
                out[int(m.group("version"))] = p
    return out


def resolve_lut(name_or_path: str | Path, *, luts_dir: Path | None = None) -> Path:
    """A path to a LUT file, or a shipped name ``SPACE/BACKEND-DEVICE[@N]`` (newest N by default)."""
    luts_dir = luts_dir or paths.LUTS_DIR
    text = str(name_or_path)
    p = Path(text)
    if p.suffix == ".json" or p.exists():
        if not p.is_file():
            raise DensenasError(f"{text}: LUT file not found")
        return p
    m = _SHIPPED_NAME.match(text)
    if not m:
        raise DensenasError(
            f"{text!r} is neither a LUT file nor a shipped LUT name (SPACE/BACKEND-DEVICE[@N], e.g. mbv2/onnxruntime-cpu)"
        )
    versions = _shipped_versions(luts_dir, m.group("space"), m.group("lut"))
    known = ", ".join(r["name"] for r in list_shipped(luts_dir=luts_dir)) or "none"
    if not versions:
        raise DensenasError(f"no shipped LUT named {m.group('space')}/{m.group('lut')}; shipped: {known}")
    if m.group("version") is None:
        return versions[max(versions)]
    v = int(m.group("version"))
    if v not in versions:
        have = ", ".join(f"@{n}" for n in sorted(versions))
        raise DensenasError(f"shipped LUT {m.group('space')}/{m.group('lut')} has no version @{v}; versions: {have}")
    return versions[v]


def load_lut(name_or_path: str | Path, *, luts_dir: Path | None = None) -> LatencyTable:
    """Load a LUT from a path or a shipped name (see ``resolve_lut``)."""
    return LatencyTable.load(resolve_lut(name_or_path, luts_dir=luts_dir))


def is_shipped(path: str | Path) -> bool:
    """Whether ``path`` is a shipped LUT (under the package's luts directory)."""
    try:
        return Path(path).resolve().is_relative_to(paths.LUTS_DIR.resolve())
    except OSError:
        return False


def list_shipped(*, luts_dir: Path | None = None) -> list[dict[str, Any]]:
    """Every shipped LUT file with the facts `lut list` shows; unreadable files say why."""
    luts_dir = luts_dir or paths.LUTS_DIR
    out: list[dict[str, Any]] = []
    if not luts_dir.is_dir():
        return out
    for p in sorted(luts_dir.glob("*/*@*.json")):
        m = _SHIPPED_FILE.match(p.name)
        if not m:
            continue
        entry: dict[str, Any] = {
            "name": f"{p.parent.name}/{m.group('lut')}@{m.group('version')}",
            "version": int(m.group("version")),
            "path": str(p),
        }
        try:
            t = LatencyTable.load(p)
        except DensenasError as exc:
            entry["error"] = str(exc)
        else:
            entry.update(
                backend=t.backend, device=t.device, batch=t.batch, precision=t.precision,
                input_size=t.input_size, rows=len(t.rows), spaces=list(t.meta.get("spaces") or []),
                date=t.meta.get("date"),
            )
        out.append(entry)
    newest: dict[str, int] = {}
    for e in out:
        base = e["name"].split("@")[0]
        newest[base] = max(newest.get(base, 0), e["version"])
    for e in out:
        e["newest"] = newest[e["name"].split("@")[0]] == e["version"]
    return out


# -- comparing LUTs --------------------------------------------------------------------


def diff_tables(a: LatencyTable, b: LatencyTable, *, ignore_run: bool = False) -> dict[str, Any]:
    """Per common row the median ratio B/A, the rows only one side has, and a summary
    (median and extreme ratios). Rows with a zero median in A have no ratio. With
    ``ignore_run`` rows match by op and shape alone, so LUTs of another batch or
    precision can be compared."""
    import statistics

    def keyed(t: LatencyTable) -> dict[str, LutRow]:
        if not ignore_run:
            return t.rows
        return {r.signature.with_run(1, "fp32").key().rsplit("|", 2)[0]: r for r in t.rows.values()}

    rows_a, rows_b = keyed(a), keyed(b)
    common = sorted(set(rows_a) & set(rows_b))
    per_row = []
    for k in common:
        ma, mb = rows_a[k].median_ms, rows_b[k].median_ms
        per_row.append({"key": k, "a_ms": ma, "b_ms": mb, "ratio": (mb / ma) if ma > 0 else None})
    ratios = [r["ratio"] for r in per_row if r["ratio"] is not None]
    only_a, only_b = sorted(set(rows_a) - set(rows_b)), sorted(set(rows_b) - set(rows_a))
    summary: dict[str, Any] = {"common": len(common), "only_in_a": len(only_a), "only_in_b": len(only_b),
                               "matched_by": "op and shape" if ignore_run else "full key"}
    if ratios:
        summary.update(
            median_ratio=statistics.median(ratios),
            max_ratio=max(ratios),
            min_ratio=min(ratios),
            geomean_ratio=math.exp(sum(math.log(r) for r in ratios if r > 0) / max(1, sum(1 for r in ratios if r > 0))),
        )
    return {
        "a": a.source,
        "b": b.source,
        "summary": summary,
        "rows": per_row,
        "only_in_a": only_a,
        "only_in_b": only_b,
    }
