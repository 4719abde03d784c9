"""One stderr console for progress and logs; stdout is kept for results (tables or JSON).

Library messages go through ``logging`` (the ``densenas`` logger, ``log`` here), shown on
that console by rich's handler.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from rich.console import Console
from rich.highlighter import NullHighlighter
from rich.logging import RichHandler
from rich.text import Text

err = Console(stderr=True, highlight=False)
out = Console(highlight=False, soft_wrap=True)


class _LineHandler(RichHandler):
    """Each record as one soft-wrapped line, so a long path is never folded or cropped
    in a log file; a warning is marked as such."""

    def emit(self, record: logging.LogRecord) -> None:
        message = self.render_message(record, self.format(record))
        if record.levelno >= logging.WARNING:
            message = Text.assemble(("warning: ", "yellow"), message)
        self.console.print(message, soft_wrap=True)


log = logging.getLogger("densenas")
log.addHandler(_LineHandler(console=err, highlighter=NullHighlighter()))
log.setLevel(logging.INFO)
log.propagate = False  # shown once, here, whatever the host application configures
warn = log.warning


def print_json(obj: Any) -> None:
    """Print one JSON object on stdout, nothing else on that stream."""
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False, default=str) + "\n")
    sys.stdout.flush()
