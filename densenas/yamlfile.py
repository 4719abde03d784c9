"""YAML settings files (search spaces, training recipes): a shipped name or a path,
``yaml.safe_load``, then a pydantic model. Every failure is one DensenasError naming the
file and, for a bad value, the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from densenas.errors import DensenasError

M = TypeVar("M", bound=BaseModel)


def resolve_named_file(name_or_path: str, shipped: dict[str, Path], what: str) -> Path:
    """A shipped name (``mbv2``) or a path to a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.is_file():
            raise DensenasError(f"{name_or_path}: {what} file not found")
        return p
    if name_or_path in shipped:
        return shipped[name_or_path]
    raise DensenasError(
        f"unknown {what} {name_or_path!r}; shipped: {', '.join(shipped) or 'none'} (or give a path to a YAML file)"
    )


def parse_mapping(text: str, source: str, what: str) -> dict[str, Any]:
    """``yaml.safe_load`` of a file that must hold a mapping (empty means empty)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "not parseable"
        raise DensenasError(f"{source}:{where} malformed YAML: {problem}") from None
    except RecursionError:
        raise DensenasError(f"{source}: malformed YAML: nested too deeply") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise DensenasError(f"{source}: malformed YAML: {' '.join(str(exc).split())[:120]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise DensenasError(f"{source}: a {what} must be a YAML mapping, got {type(data).__name__}")
    return data


def validate(model: type[M], data: dict[str, Any], source: str) -> M:
    try:
        return model.model_validate(data)
    except RecursionError:
        raise DensenasError(f"{source}: a field is nested too deeply (or refers to itself)") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise DensenasError(f"{source}: field {field_path(first.get('loc', ()))}: {msg}") from None


def field_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"
