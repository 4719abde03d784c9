"""Latency lookup tables: the versioned, keyed store (``store``), the profiling job that
fills one (``profile``), the importer for the paper's latency lists (``legacy``) and the
accuracy check that predicts and times random networks (``validate``)."""

from densenas.lut.store import (
    LUT_SCHEMA,
    LatencyTable,
    LutRow,
    list_shipped,
    load_lut,
    resolve_lut,
)

__all__ = ["LUT_SCHEMA", "LatencyTable", "LutRow", "list_shipped", "load_lut", "resolve_lut"]
