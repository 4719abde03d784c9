"""One stderr console for progress and logs; stdout is kept for results (tables or JSON)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout, nothing else on that stream."""
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()


def warn(msg: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(msg)}", soft_wrap=True)


def info(msg: str) -> None:
    err.print(escape(msg), soft_wrap=True)
