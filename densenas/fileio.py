"""Atomic file writes (through ``profilers.atomic``, the project's one writer) of text,
JSON and checkpoints, and JSON read strictly as data (every failure is one
DensenasError naming the file)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from densenas.errors import DensenasError
from densenas.profilers.atomic import atomic_path, write_bytes  # noqa: F401 (the library writes through these)


def write_text(path: str | os.PathLike, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def torch_save(path: str | os.PathLike, obj: Any) -> None:
    """torch.save through a temporary file, so a checkpoint is never half-written."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def parse_json(text: str, *, source: str) -> Any:
    """Parse JSON text as data; malformed, over-deep or oversized input is one
    DensenasError naming ``source`` (never a ValueError or RecursionError)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DensenasError(f"{source}: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise DensenasError(f"{source}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer longer than Python converts
        raise DensenasError(f"{source}: not valid JSON ({exc})") from None


def read_text(path: str | os.PathLike, what: str) -> str:
    """A user's text file; ``what`` names the kind of file in the one-line error."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DensenasError(f"{p}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DensenasError(f"{p}: cannot read {what} ({exc})") from None


def read_json(path: str | os.PathLike, *, what: str) -> Any:
    """Read a JSON file as data; ``what`` names the kind of file in the messages."""
    return parse_json(read_text(path, what=what), source=str(Path(path)))
