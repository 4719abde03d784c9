"""Profilers by name: the entry points of the group ``densenas.profilers``.

The built-in backends are declared there too (pyproject.toml), so there is one registry
and a third-party backend is found exactly as a built-in one is. Loading checks what a
backend declares, so a broken or incomplete plug-in is one line naming it and what is
missing, not a traceback from deep inside a measurement.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from densenas.profilers.base import Profiler
from densenas.profilers.errors import ProfilerError

GROUP = "densenas.profilers"
OWN_DISTRIBUTION = "densenas"


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"


def _is_builtin(ep: EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    return dist is not None and dist.name == OWN_DISTRIBUTION


def _entry_points() -> dict[str, EntryPoint]:
    """One entry point per name. A built-in name always means the built-in backend: a
    plug-in that declares the same name cannot shadow it."""
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        if ep.name not in found or _is_builtin(ep):
            found[ep.name] = ep
    return found


def list_profilers() -> list[str]:
    """Every registered name, built-in or from an installed distribution, sorted."""
    return sorted(_entry_points())


def _where(ep: EntryPoint) -> str:
    return f"profiler backend {ep.name!r} ({ep.value}, from {_distribution(ep)})"


def _load(ep: EntryPoint) -> object:
    try:
        return ep.load()
    except Exception as exc:  # a plug-in's import can fail in any way; say which one failed
        raise ProfilerError(f"{_where(ep)} cannot be loaded: {type(exc).__name__}: {exc}") from exc


def get_profiler_class(name: str) -> type[Profiler]:
    """The class registered under ``name``, checked to be a complete Profiler whose
    ``name`` is the one it is registered under (a LUT records the class's name, and
    ``bench`` finds the backend again by it)."""
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none (is densenas installed? pip install -e .)"
        raise ProfilerError(f"unknown profiler backend {name!r}; known: {known}")
    ep = eps[name]
    cls = _load(ep)
    if not (isinstance(cls, type) and issubclass(cls, Profiler)):
        raise ProfilerError(f"{_where(ep)} is {cls!r}, which is not a densenas.profilers.Profiler subclass")
    missing = cls.missing_parts()
    if missing:
        raise ProfilerError(f"{_where(ep)} is incomplete: {cls.__name__} lacks {', '.join(missing)}")
    if cls.name != name:
        raise ProfilerError(f"{_where(ep)}: {cls.__name__}.name is {cls.name!r}; it must equal the entry point's name")
    return cls


def describe_profilers() -> list[tuple[str, bool, str]]:
    """(name, available, reason) for every registered backend, for ``--list`` style output.
    A backend that fails to load, or whose ``available()`` raises, is reported as
    unavailable rather than raising."""
    rows: list[tuple[str, bool, str]] = []
    for name in list_profilers():
        try:
            ok, reason = get_profiler_class(name).available()
        except ProfilerError as exc:
            ok, reason = False, str(exc)
        except Exception as exc:  # a plug-in's own check failing is its problem, not the listing's
            ok, reason = False, f"{name}: available() raised {type(exc).__name__}: {exc}"
        rows.append((name, ok, reason))
    return rows
