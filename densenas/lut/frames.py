"""LUTs and their comparisons as pandas tables, for notebooks and spreadsheets.

``table_to_frame`` gives one row per op signature, indexed by the row key, with the
signature's fields and every statistic as columns, and the provenance in
``DataFrame.attrs["meta"]`` (Parquet keeps it; CSV holds the rows only).
``table_from_frame`` reads such a frame back through the same validation a LUT file
gets, so a hand-edited frame cannot smuggle in a bad row. ``diff_frame`` and
``validation_frame`` are ``lut diff`` and ``lut validate`` results in the same form.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from densenas.errors import DensenasError
from densenas.fileio import atomic_path
from densenas.lut.store import LatencyTable, LutRow, diff_tables

if TYPE_CHECKING:
    import pandas as pd

    from densenas.lut.validate import ValidationResult

FORMATS = ("csv", "parquet")
_SIGNATURE_COLUMNS = ("op", "c_in", "c_out", "stride", "h", "w", "batch", "dtype")


def row_columns() -> list[str]:
    """The frame's columns: the signature's fields, then every field a ``LutRow`` has."""
    return [*_SIGNATURE_COLUMNS, *(f.name for f in fields(LutRow) if f.name != "signature")]


def table_to_frame(table: LatencyTable) -> "pd.DataFrame":
    """One row per op signature, sorted and indexed by key; optional fields that a row
    leaves out are missing values (an empty note is the empty string)."""
    import pandas as pd

    columns = row_columns()
    records = []
    for key in sorted(table.rows):
        d = table.rows[key].to_dict()
        records.append({"key": key, **{c: d.get(c, "" if c in ("note", "measured_at") else None) for c in columns}})
    df = pd.DataFrame.from_records(records, columns=["key", *columns]).set_index("key")
    # optional numbers (None where a row has none) as float columns, missing as NaN
    df = df.astype({f.name: "float64" for f in fields(LutRow) if "float" in str(f.type)})
    df.attrs["meta"] = {k: v for k, v in table.meta.items() if k != "schema"}
    df.attrs["source"] = table.source
    return df


def table_from_frame(df: "pd.DataFrame", meta: Mapping[str, Any] | None = None, *, source: str = "<frame>") -> LatencyTable:
    """A LUT from a frame like ``table_to_frame`` gives (``meta`` defaults to
    ``df.attrs["meta"]``); every row is validated as a LUT file's row is."""
    if meta is None:
        meta = df.attrs.get("meta") or {}
    missing = [c for c in _SIGNATURE_COLUMNS + ("median_ms", "mean_ms", "iqr_ms", "p10_ms", "p90_ms", "samples")
               if c not in df.columns]
    if missing:
        raise DensenasError(f"{source}: column {missing[0]!r} is missing (a LUT frame has {', '.join(row_columns())})")
    table = LatencyTable(meta=dict(meta), source=source)
    keyed = df.index.name == "key"
    for i, (index, record) in enumerate(zip(df.index, df.to_dict("records"))):
        d = {k: _native(v) for k, v in record.items()}
        d = {k: v for k, v in d.items() if v is not None}
        if keyed:
            d["key"] = index
        row = LutRow.from_dict(d, where=f"{source}: row {i}")
        if row.key in table.rows:
            raise DensenasError(f"{source}: row {i}: duplicate row for {row.key!r}")
        table.add(row)
    return table


def _native(value: Any) -> Any:
    """A frame cell as the JSON-like value a LUT row holds: numpy scalars as Python
    numbers, a missing value (NaN, None, NA) as None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return value


def diff_frame(a: LatencyTable, b: LatencyTable, *, ignore_run: bool = False) -> "pd.DataFrame":
    """``lut diff`` as a table: one row per key either LUT has, columns ``a_ms``,
    ``b_ms``, ``ratio`` (B/A) and ``in`` (``both``, ``a`` or ``b``), sorted by key. The
    times and the ratio are given for rows both LUTs have (no ratio where A is 0);
    ``df.attrs["summary"]`` is the summary ``lut diff`` prints."""
    import pandas as pd

    d = diff_tables(a, b, ignore_run=ignore_run)
    records = [{**r, "in": "both"} for r in d["rows"]]
    records += [{"key": k, "in": side} for side in ("a", "b") for k in d[f"only_in_{side}"]]
    df = pd.DataFrame.from_records(records, columns=["key", "a_ms", "b_ms", "ratio", "in"])
    df = df.astype({"a_ms": "float64", "b_ms": "float64", "ratio": "float64"}).set_index("key").sort_index()
    df.attrs.update(a=d["a"], b=d["b"], summary=d["summary"])
    return df


def validation_frame(result: "ValidationResult") -> "pd.DataFrame":
    """``lut validate`` per network: ``net_config``, ``predicted_ms``, ``measured_ms``,
    ``sum_of_ops_ms``, ``error_pct`` (and the calibrated or re-measured columns when the
    run made them), one row per sampled network in the order they were drawn."""
    import pandas as pd

    d = result.to_dict()
    df = pd.DataFrame.from_records(d["networks"])
    df.index.name = "network"
    df.attrs.update({k: d[k] for k in ("lut", "space", "backend", "device", "samples", "mape") if k in d})
    return df


def write_frame(df: "pd.DataFrame", path: str | Path, fmt: str) -> Path:
    """Write ``df`` as CSV or Parquet atomically (a kill leaves the old file or the new one)."""
    if fmt not in FORMATS:
        raise DensenasError(f"--to must be one of {', '.join(FORMATS)}, got {fmt!r}")
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            if fmt == "csv":
                df.to_csv(tmp)
            else:
                df.to_parquet(tmp)
    except OSError as exc:
        raise DensenasError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return path
