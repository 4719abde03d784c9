"""The search checkpoint: everything a resumed search needs to continue exactly where an
uninterrupted one would be, stored so ``torch.load(weights_only=True)`` can read it
(tensors, numbers, strings, lists and dicts only: RNG states are converted to those).

Written atomically once per epoch, after the epoch's other files, so a kill at any moment
leaves the previous complete checkpoint.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densenas.errors import DensenasError
from densenas.fileio import torch_save

CHECKPOINT_SCHEMA = "densenas.search_checkpoint/1"


def capture_rng() -> dict[str, Any]:
    """The global RNG states of torch, numpy and Python, as weights-only-loadable values."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss_next": py_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    torch_save(path, {"schema": CHECKPOINT_SCHEMA, **state})


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint without unpickling arbitrary objects; errors name the file."""
    p = Path(path)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DensenasError(f"{p}: checkpoint not found") from None
    except Exception as exc:  # a truncated or foreign file: torch raises several types
        raise DensenasError(f"{p}: not a readable search checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("schema") != CHECKPOINT_SCHEMA:
        found = state.get("schema") if isinstance(state, dict) else type(state).__name__
        raise DensenasError(f"{p}: field schema: expected {CHECKPOINT_SCHEMA!r}, got {found!r}")
    return state
