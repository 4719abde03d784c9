"""The profiling job: measure every unique op signature of a space into a LUT file.

Each op is handed to the profiler as ``(key, module_factory, input_shape)``; every row
is written to disk (atomically) as soon as its chunk finishes, so Ctrl-C or SIGKILL
loses at most the chunk in flight, and ``--resume`` picks up where the run stopped.
Rows from two runs share a file only when their fingerprints (backend and version,
device, threads, precision, batch, input size) agree.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from densenas import __version__ as densenas_version
from densenas.errors import DensenasError
from densenas.lut.store import (
    DEFAULT_CALIBRATION,
    LatencyTable,
    LutRow,
    device_slug,
    fingerprint_differences,
    lut_basename,
)
from densenas.profilers.hostinfo import BUSY_CPUS, HostMonitor, host_is_busy
from densenas.signature import OpSignature

if TYPE_CHECKING:
    from densenas.profilers import Profiler, Protocol

    from densenas.space.graph import SearchSpace

ENV_PROTOCOL = "DENSENAS_PROFILE_PROTOCOL"
DEFAULT_RUNS_DIR = Path("runs") / "luts"

# Protocol presets for ``--protocol``. "default" is the profilers' own protocol; "fast"
# trades precision for speed (tests, smoke runs): a few short rounds per op.
PROTOCOL_PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {
        "warmup_s": 0.005,
        "min_sample_s": 0.0002,
        "min_rounds": 2,
        "max_rounds": 3,
        "samples_per_round": 2,
        "max_s_per_op": 0.05,
    },
}

ProgressFn = Callable[[int, int, OpSignature, LutRow], None]
LogFn = Callable[[str], None]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parse_protocol(spec: str | None) -> "Protocol":
    """``--protocol`` text: a preset name, ``key=value`` overrides, or both
    (``fast,chunk_size=4``); unknown names and fields are errors naming them."""
    from densenas.profilers import Protocol
    from densenas.profilers.errors import ProfilerError

    settings: dict[str, Any] = {}
    for part in [p.strip() for p in (spec or "default").split(",") if p.strip()]:
        if "=" not in part:
            if part not in PROTOCOL_PRESETS:
                raise DensenasError(
                    f"unknown protocol preset {part!r}; presets: {', '.join(PROTOCOL_PRESETS)} (or key=value settings)"
                )
            settings.update(PROTOCOL_PRESETS[part])
            continue
        key, _, raw = part.partition("=")
        key, raw = key.strip(), raw.strip()
        try:
            value: Any = int(raw) if re.fullmatch(r"[-+]?\d+", raw) else float(raw)
        except ValueError:
            raise DensenasError(f"protocol setting {key!r}: {raw!r} is not a number") from None
        settings[key] = value
    try:
        return Protocol.from_dict(settings)
    except ProfilerError as exc:
        raise DensenasError(f"--protocol {spec!r}: {exc}") from None


def parse_deployment(spec: str | None) -> dict[str, Any] | None:
    """``--deployment`` text: backend options whole networks run with, ``key=value`` pairs
    (``spinning=off``); on/off/true/false are booleans, digits integers."""
    if spec is None:
        return None
    options: dict[str, Any] = {}
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise DensenasError(f"--deployment {spec!r}: {part!r} is not key=value (e.g. spinning=off)")
        raw = raw.strip().lower()
        flags = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}
        options[key.strip()] = flags[raw] if raw in flags else int(raw) if re.fullmatch(r"[-+]?\d+", raw) else raw
    return options


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``i/N`` (1-based i) -> (i, N)."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise DensenasError(f"--shard must be i/N with 1 <= i <= N (e.g. 2/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def shard_signatures(signatures: list[OpSignature], shard: tuple[int, int] | None) -> list[OpSignature]:
    """The i-th of N deterministic slices of the signatures sorted by key (round-robin,
    so each shard gets a mix of small and large ops)."""
    ordered = sorted(signatures, key=lambda s: s.key())
    if shard is None:
        return ordered
    i, n = shard
    return ordered[i - 1 :: n]


def default_out_path(space: str, basename: str, batch: int, precision: str, shard: tuple[int, int] | None) -> Path:
    """``runs/luts/<space>/<backend>-<device>-b<batch>-<precision>[.shard-i-of-N].json``."""
    stem = f"{basename}-b{batch}-{precision}"
    if shard is not None:
        stem += f".shard-{shard[0]}-of-{shard[1]}"
    return DEFAULT_RUNS_DIR / space / f"{stem}.json"


def version_from_path(path: Path) -> int:
    m = re.search(r"@(\d+)\.json$", path.name)
    return int(m.group(1)) if m else 1


@dataclass
class ProfileResult:
    """What a profiling run did, for the CLI to print."""

    path: Path
    table: LatencyTable
    space: str
    needed: int  # signatures this run (or shard) is responsible for
    measured: int  # rows measured by this run
    reused: int  # rows found in the existing file
    wall_s: float
    overhead_ms: float | None
    shard: tuple[int, int] | None = None
    remeasured: int = 0  # rows replaced because they were noisy (``remeasure_above``)
    notes: list[str] = field(default_factory=list)
    refinement: Any = None  # the in-context fit (``refine.RefineResult``) with ``networks``

    def to_dict(self) -> dict[str, Any]:
        return {
            "lut": str(self.path),
            "space": self.space,
            "backend": self.table.backend,
            "device": self.table.device,
            "batch": self.table.batch,
            "precision": self.table.precision,
            "threads": self.table.meta.get("threads"),
            "needed": self.needed,
            "measured": self.measured,
            "remeasured": self.remeasured,
            "reused": self.reused,
            "rows": len(self.table.rows),
            "complete": self.measured + self.reused >= self.needed,
            "overhead_ms": self.overhead_ms,
            "wall_s": round(self.wall_s, 3),
            "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
            "notes": self.notes,
            "deployment": None if self.table.deployment is None else self.table.deployment.to_lut(),
            "refinement": None if self.refinement is None else self.refinement.to_dict(),
        }


def run_meta(prof: "Profiler", space: "SearchSpace", *, batch: int, name: str, lut_version: int) -> dict[str, Any]:
    """The provenance a new LUT starts with, from the profiler's fingerprint."""
    fp = prof.fingerprint()
    now = _now()
    return {
        "lut_version": lut_version,
        "name": name,
        "spaces": [space.name],
        "backend": fp["backend"],
        "backend_version": fp.get("backend_version"),
        "device": fp["device"],
        "device_kind": fp.get("device_kind"),
        "threads": fp.get("threads"),
        "precision": fp["precision"],
        "batch": batch,
        "input_size": space.input_size,
        "protocol": fp.get("protocol"),
        "timing_scope": fp.get("timing_scope"),
        "versions": {**(fp.get("versions") or {}), "densenas": densenas_version},
        "date": now,
        "updated": now,
        "host": fp,
        "overhead_ms": None,
        "overhead": None,
        "calibration": dict(DEFAULT_CALIBRATION),
        "host_load": {"start": _loadavg()},
    }


def measurement_quality(table: LatencyTable, rel_iqr_target: float) -> dict[str, Any]:
    """How settled the rows are: the share whose IQR/median met the protocol's target and
    the median IQR/median. A low share means a noisy host (other work, throttling)."""
    measured = [r for r in table.rows.values() if r.median_ms > 0 and r.samples > 0]
    rel = sorted(r.iqr_ms / r.median_ms for r in measured)
    if not rel:
        return {"rows": 0}
    busy = [r for r in measured if r.host_busy is not None]
    return {
        "rows": len(rel),
        "stable_share": round(sum(x < rel_iqr_target for x in rel) / len(rel), 3),
        "median_rel_iqr": round(rel[len(rel) // 2], 4),
        "rel_iqr_target": rel_iqr_target,
        "busy_host_share": round(sum(r.host_busy > BUSY_CPUS for r in busy) / len(busy), 3) if busy else None,
    }


def _quality_warning(quality: dict[str, Any]) -> str | None:
    """A warning when many rows were measured on a busy host or spread widely; None when fine."""
    if not quality.get("rows"):
        return None
    busy = quality.get("busy_host_share") or 0.0
    if busy > 0.1:
        return (f"{busy:.0%} of rows were measured while other processes kept more than {BUSY_CPUS} CPUs busy; "
                "redo them in a quiet spell with --remeasure-noisy 0.25")
    if quality["median_rel_iqr"] > 0.5:
        return (f"the rows' median IQR/median is {quality['median_rel_iqr']:.2f}: the host was noisy; "
                "redo the worst rows with --remeasure-noisy 0.25")
    return None


def busy_host_warning(threads: int) -> str | None:
    """A warning when other work already occupies the CPUs the measurement needs: with
    several threads per op, one descheduled thread stalls the others for a whole
    scheduler slice, and per-op latencies come out orders of magnitude too high."""
    from densenas.profilers import hostinfo

    monitor = HostMonitor()
    time.sleep(0.5)
    others = monitor.other_cpus()
    cpus = hostinfo.usable_cpus()
    if others is None or not host_is_busy(others, threads):
        return None
    return (
        f"the host is busy (other processes use {others:.1f} of {cpus} CPUs) and this run uses {threads} threads: "
        "latencies will be noisy and may be far too high; profile on an idle host, or with fewer --threads "
        "(rows measured meanwhile can be redone later with --remeasure-noisy)"
    )


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: other work on the host is the usual cause of noise."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def profile_space(
    space_name: str,
    backend: str,
    *,
    batch: int = 1,
    precision: str = "fp32",
    threads: int | None = None,
    out: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    shard: tuple[int, int] | None = None,
    protocol: "Protocol | None" = None,
    remeasure_above: float | None = None,
    networks: int | None = None,
    deployment: dict[str, Any] | None = None,
    allow_busy: bool = False,
    on_progress: ProgressFn | None = None,
    on_start: Callable[[int, int], None] | None = None,
    log: LogFn | None = None,
) -> ProfileResult:
    """Measure the space's unique op signatures (or one shard of them) on ``backend``
    into the LUT at ``out``, saving after every finished chunk.

    ``remeasure_above``: also re-measure rows already in the file whose IQR/median
    exceeds it, so rows spoilt by other work on the host can be redone in a quiet spell.

    ``deployment``: backend options whole networks run with (default the backend's
    ``deployment_options``), recorded in ``meta.deployment``. ``networks``: then fit the
    rows' in-context costs on that many networks (``densenas.lut.refine``).
    """
    from densenas.bench import make_profiler
    from densenas.lut.refine import default_deployment, refine_lut
    from densenas.space import SearchSpace

    log = log or (lambda msg: None)
    if batch < 1:
        raise DensenasError(f"--batch must be a positive integer, got {batch}")
    space = SearchSpace.load(space_name)
    if protocol is None:
        protocol = parse_protocol(None)
    prof = make_profiler(backend, threads=threads, precision=precision, protocol=protocol)
    if deployment:
        try:  # refused here, not after the ops are measured
            make_profiler(backend, threads=threads, precision=precision, protocol=protocol, **deployment)
        except DensenasError as exc:
            raise DensenasError(f"--deployment: {exc}") from None
    fp = prof.fingerprint()
    basename = lut_basename(str(fp["backend"]), device_slug(str(fp.get("device_kind", "cpu")), str(fp["device"])))
    path = Path(out) if out is not None else default_out_path(space.name, basename, batch, precision, shard)
    # the shipped name: precision other than fp32 is part of it (tensorrt-h100-fp16)
    name = f"{space.name}/{basename}" + ("" if precision == "fp32" else f"-{precision}")
    meta = run_meta(prof, space, batch=batch, name=name, lut_version=version_from_path(path))
    notes: list[str] = []

    table = _open_table(path, meta, resume=resume, force=force, log=log, notes=notes)
    if space.name not in table.meta.setdefault("spaces", []):
        table.meta["spaces"].append(space.name)
    if shard is not None:
        table.meta["shard"] = f"{shard[0]}/{shard[1]}"
    if deployment is not None or table.deployment is None:
        table.deployment = default_deployment(table, deployment)
    if table.meta.get("protocol") != meta["protocol"]:
        others = table.meta.setdefault("other_protocols", [])
        if meta["protocol"] not in others:
            others.append(meta["protocol"])
        msg = "this run's protocol settings differ from the file's; recorded under meta.other_protocols"
        notes.append(msg)
        log(f"warning: {msg}")

    if fp.get("device_kind") == "cpu":
        warning = busy_host_warning(int(fp.get("threads") or 1))
        if warning:
            notes.append(warning)
            log(f"warning: {warning}")
    wanted = shard_signatures(space.unique_signatures(batch, precision), shard)
    todo = [s for s in wanted if s.key() not in table.rows or _noisy(table.rows[s.key()], remeasure_above)]
    redo = sum(1 for s in todo if s.key() in table.rows)
    if redo:
        log(f"re-measuring {redo} rows whose IQR/median exceeds {remeasure_above}")
    reused = len(wanted) - len(todo)
    t0 = time.perf_counter()
    overhead_ms: float | None = table.meta.get("overhead_ms")
    if on_start is not None:
        on_start(reused, len(wanted))
    if todo:
        with prof:
            oh = prof.overhead()
            overhead_ms = oh.median_ms
            table.meta["overhead_ms"] = oh.median_ms
            table.meta["overhead"] = oh.to_dict()
            table.save(path)
            log(f"profiling {len(todo)} op signatures of {space.name} on {backend} into {path}"
                f" ({reused} already there; per-call overhead {oh.median_ms:.4f} ms)")
            _measure_into(prof, table, path, todo, reused, len(wanted), on_progress, log)
    wall_s = time.perf_counter() - t0
    table.meta["updated"] = _now()
    table.meta["host_load"] = {"start": meta["host_load"]["start"], "end": _loadavg()}
    if todo:  # measuring time summed over the runs that filled this file, and each run
        table.meta["profile_wall_s"] = round(float(table.meta.get("profile_wall_s") or 0.0) + wall_s, 2)
        table.meta.setdefault("runs", []).append(
            {"date": meta["date"], "measured": len(todo), "remeasured": redo, "wall_s": round(wall_s, 2)}
        )
    table.meta["quality"] = quality = measurement_quality(table, prof.protocol.rel_iqr_target)
    msg = _quality_warning(quality) if todo else None
    if msg:
        notes.append(msg)
        log(f"warning: {msg}")
    table.save(path)
    refined = None
    if networks is not None and shard is None:
        refined = refine_lut(table, space_name, networks=networks, out=path, allow_busy=allow_busy, log=log)
        if refined.stored:
            table = LatencyTable.load(path)
        else:
            notes.append(refined.reason)
            log(f"warning: {refined.reason}")
    return ProfileResult(
        path=path, table=table, space=space.name, needed=len(wanted), measured=len(todo), reused=reused,
        wall_s=wall_s, overhead_ms=overhead_ms, shard=shard, notes=notes, remeasured=redo, refinement=refined,
    )


def _noisy(row: LutRow, limit: float | None) -> bool:
    if limit is None or row.samples == 0:
        return False
    if row.host_busy is not None and row.host_busy > BUSY_CPUS:
        return True
    return row.median_ms > 0 and row.iqr_ms / row.median_ms > limit


def _open_table(path: Path, meta: dict[str, Any], *, resume: bool, force: bool, log: LogFn, notes: list[str]) -> LatencyTable:
    """The table to fill: the existing file when its fingerprint matches this run, a new
    one otherwise (only with ``force`` when a file is there)."""
    fresh = LatencyTable(meta, source=str(path))
    if not path.exists():
        if resume:
            log(f"{path} does not exist yet; nothing to resume, starting a new LUT")
        return fresh
    try:
        existing = LatencyTable.load(path)
    except DensenasError:
        if resume or not force:
            raise
        log(f"{path} is not a readable LUT; --force: starting over")
        return fresh
    diffs = fingerprint_differences(existing.fingerprint(), fresh.fingerprint(), have_name=str(path), want_name="this run")
    if diffs:
        if resume or not force:
            what = "--resume refused" if resume else f"{path} exists and was measured differently"
            fix = "" if resume else "; pass --force to overwrite it, or choose another --out"
            raise DensenasError(f"{what}: {'; '.join(diffs)}{fix}")
        log(f"{path} was measured differently ({'; '.join(diffs)}); --force: starting over")
        return fresh
    if force and not resume:
        log(f"--force: overwriting {path}")
        return fresh
    if not resume:
        msg = f"{path} exists with the same fingerprint; reusing its {len(existing.rows)} rows (--force to start over)"
        log(msg)
        notes.append(msg)
    return existing


def _measure_into(
    prof: "Profiler",
    table: LatencyTable,
    path: Path,
    todo: list[OpSignature],
    reused: int,
    total: int,
    on_progress: ProgressFn | None,
    log: LogFn,
) -> None:
    """Run ``measure_many`` and write the file once each chunk's rows are in, and on the
    way out (Ctrl-C or an error) so nothing measured is lost."""
    by_key = {s.key(): s for s in todo}
    chunk = prof.protocol.chunk_size
    pending = 0
    done = 0
    monitor = HostMonitor()
    chunk_busy: float | None = None

    def on_done(key: str, m: Any) -> None:
        nonlocal pending, done, chunk_busy
        if pending == 0:  # the first result of a chunk: its measuring has just ended
            chunk_busy = monitor.other_cpus()
        sig = by_key[key]
        row = LutRow.from_measurement(sig, m, measured_at=_now(), host_busy=chunk_busy)
        table.add(row)
        pending += 1
        done += 1
        if pending >= chunk or done == len(todo):
            table.save(path)
            pending = 0
            monitor.other_cpus()  # the next chunk starts now
        if on_progress is not None:
            on_progress(reused + done, total, sig, row)

    items = [(s.key(), _factory(s), _input_shape(s)) for s in todo]
    try:
        prof.measure_many(items, on_done)
    except KeyboardInterrupt:
        log(f"interrupted: {reused + done} of {total} rows are saved in {path}; continue with --resume")
        raise
    finally:
        if pending:
            table.save(path)


def _factory(sig: OpSignature) -> Callable[[], Any]:
    from densenas.ops import module_for_signature

    return lambda: module_for_signature(sig)


def _input_shape(sig: OpSignature) -> tuple[int, ...]:
    from densenas.ops import input_shape_for_signature

    return input_shape_for_signature(sig)


# -- merging shards --------------------------------------------------------------------


def merge_tables(tables: list[LatencyTable], *, name: str | None = None) -> tuple[LatencyTable, list[str]]:
    """One table from several shards of the same fingerprint. Rows present in several
    inputs must agree exactly; any conflict is an error naming the row and the files."""
    if len(tables) < 2:
        raise DensenasError("lut merge needs at least two LUT files")
    first = tables[0]
    for t in tables[1:]:
        diffs = fingerprint_differences(first.fingerprint(), t.fingerprint(), have_name=first.source, want_name=t.source)
        if diffs:
            raise DensenasError(f"cannot merge {t.source} into {first.source}: {'; '.join(diffs)}")
    meta = {k: v for k, v in first.meta.items() if k != "shard"}
    spaces: list[str] = []
    for t in tables:
        for s in t.meta.get("spaces") or []:
            if s not in spaces:
                spaces.append(s)
    meta["spaces"] = spaces
    meta["merged_from"] = [t.source for t in tables]
    meta["updated"] = _now()
    if name:
        meta["name"] = name
    merged = LatencyTable(meta, source="<merged>")
    owner: dict[str, str] = {}
    conflicts: list[str] = []
    notes: list[str] = []
    for t in tables:
        for key, row in t.rows.items():
            have = merged.rows.get(key)
            if have is None:
                merged.add(row)
                owner[key] = t.source
            elif have != row:
                conflicts.append(f"{key} ({owner[key]}: {have.median_ms:.4g} ms, {t.source}: {row.median_ms:.4g} ms)")
    if conflicts:
        more = f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else ""
        raise DensenasError(f"{len(conflicts)} rows conflict between the inputs: {'; '.join(conflicts[:5])}{more}")
    overheads = [t.overhead_ms for t in tables if t.meta.get("overhead_ms")]
    if len(set(overheads)) > 1:
        notes.append(f"shards measured different per-call overheads ({', '.join(f'{o:.4g}' for o in overheads)} ms); kept {first.source}'s")
    return merged, notes
