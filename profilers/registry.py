"""Profilers by name. Backends register as entry points in the group ``densenas.profilers``
(the built-in ones too, in pyproject.toml); the built-ins are also known here directly so
lookup works from a source checkout that was never pip-installed."""

from __future__ import annotations

import importlib
from importlib.metadata import EntryPoint, entry_points

from densenas.profilers.base import Profiler
from densenas.profilers.errors import ProfilerError

GROUP = "densenas.profilers"

BUILTINS: dict[str, str] = {
    "torch-cpu": "densenas.profilers.torch_cpu:TorchCPUProfiler",
    "torch-cuda": "densenas.profilers.torch_cuda:TorchCUDAProfiler",
    "onnxruntime": "densenas.profilers.ort:OnnxRuntimeProfiler",
    "tensorrt": "densenas.profilers.tensorrt_backend:TensorRTProfiler",
}


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def list_profilers() -> list[str]:
    """Every registered name, built-in or from an installed distribution, sorted."""
    return sorted(set(BUILTINS) | set(_entry_points()))


def _load(name: str, target: str) -> object:
    module_name, _, attr = target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise ProfilerError(f"profiler {name!r} ({target}) cannot be loaded: {type(exc).__name__}: {exc}") from exc
    return obj


def get_profiler_class(name: str) -> type[Profiler]:
    """The class registered under ``name``. Built-in names always mean the built-in
    backends; an entry point cannot shadow them."""
    if name in BUILTINS:
        cls = _load(name, BUILTINS[name])
    else:
        eps = _entry_points()
        if name not in eps:
            raise ProfilerError(f"unknown profiler backend {name!r}; known: {', '.join(list_profilers())}")
        cls = _load(name, eps[name].value)
    if not (isinstance(cls, type) and issubclass(cls, Profiler)):
        raise ProfilerError(f"profiler {name!r} is registered as {cls!r}, which is not a profilers.Profiler subclass")
    return cls


def describe_profilers() -> list[tuple[str, bool, str]]:
    """(name, available, reason) for every registered backend, for ``--list`` style output.
    A backend that fails to load is reported as unavailable rather than raising."""
    rows: list[tuple[str, bool, str]] = []
    for name in list_profilers():
        try:
            ok, reason = get_profiler_class(name).available()
        except ProfilerError as exc:
            ok, reason = False, str(exc)
        rows.append((name, ok, reason))
    return rows
