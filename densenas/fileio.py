"""Atomic file writes (a kill at any moment leaves either the old file or the new one),
and JSON read strictly as data (every failure is one DensenasError naming the file)."""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from densenas.errors import DensenasError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename over ``path``."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        # mkstemp makes 0600 files; give them the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
        _fsync_dir(target.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut after it keeps the new file)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles: the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


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
