"""Latency profilers: measure a torch module at an input shape on one backend.

Knows nothing of search spaces (it never imports ``densenas``). Backends are found by
name through ``get_profiler_class``; importing this package loads none of them.
"""

from densenas.profilers.base import Profiler
from densenas.profilers.errors import ProfilerError, ProfilerUnavailable
from densenas.profilers.protocol import Prepared, Protocol
from densenas.profilers.registry import describe_profilers, get_profiler_class, list_profilers
from densenas.profilers.stats import Measurement

__all__ = [
    "Measurement",
    "Prepared",
    "Profiler",
    "ProfilerError",
    "ProfilerUnavailable",
    "Protocol",
    "describe_profilers",
    "get_profiler_class",
    "list_profilers",
]
