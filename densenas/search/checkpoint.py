"""The search checkpoint: everything a resumed search needs to continue exactly where an
uninterrupted one would be, stored so ``torch.load(weights_only=True)`` can read it
(tensors, numbers, strings, lists and dicts only: RNG states are converted to those).

Written atomically once per epoch, after the epoch's other files, so a kill at any moment
leaves the previous complete checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from densenas.errors import DensenasError
from densenas.fileio import torch_save
from densenas.runtime import read_torch_file

CHECKPOINT_SCHEMA = "densenas.search_checkpoint/1"


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    torch_save(path, {"schema": CHECKPOINT_SCHEMA, **state})


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without unpickling arbitrary objects; errors name the file."""
    state = read_torch_file(path, what="checkpoint")
    if not isinstance(state, dict) or state.get("schema") != CHECKPOINT_SCHEMA:
        found = state.get("schema") if isinstance(state, dict) else type(state).__name__
        raise DensenasError(f"{Path(path)}: field schema: expected {CHECKPOINT_SCHEMA!r}, got {found!r}")
    return state
