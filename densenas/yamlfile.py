"""Settings as strict pydantic models, read from YAML files (search spaces, training
recipes: a shipped name or a path, ``yaml.safe_load``, then the model) or from command-line
options. Every failure is one DensenasError naming the file and the field, or the option."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from densenas.errors import DensenasError
from densenas.fileio import read_text

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    # enum fields (defaults too) hold their plain values: the models are dumped to YAML
    # and to checkpoints that load with weights_only, neither of which takes an Enum
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=True, validate_default=True)


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


def load_settings(model: type[M], name_or_path: str, shipped: dict[str, Path], what: str) -> M:
    """``model`` from a shipped name or a YAML path; ``what`` names the kind of file in errors."""
    path = resolve_named_file(name_or_path, shipped, what)
    return parse_settings(model, read_text(path, what), source=str(path), what=what)


def parse_settings(model: type[M], text: str, *, source: str, what: str) -> M:
    return validate(model, parse_mapping(text, source, what), source)


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
        raise DensenasError(f"{source}: field {field_path(first.get('loc', ()))}: {_message(first)}") from None


@contextmanager
def options_checked(given: dict[str, Any]) -> Iterator[None]:
    """A pydantic error over command-line values (``given``, by field name) as one line
    naming the option (``--batch-size: ...``), or the field when no option set it."""
    try:
        yield
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc", ())
        name = str(loc[0]) if loc else next(iter(given), "")
        where = f"--{name.replace('_', '-')}" if name in given else f"field {field_path(loc)}"
        raise DensenasError(f"{where}: {_message(first)}") from None


def field_path(loc: tuple) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def _message(error: Any) -> str:
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")
