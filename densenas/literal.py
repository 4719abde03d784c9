"""A parser for the small Python literals the paper's files use (nested lists of
numbers and quoted strings), so they are read as data and never evaluated."""

from __future__ import annotations

import re
from typing import Any

from densenas.errors import DensenasError

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>[\[(])|(?P<close>[\])])|(?P<comma>,)|
        (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|
        (?P<str>'[^'\\\n]*'|"[^"\\\n]*")
    )""",
    re.VERBOSE,
)
MAX_CHARS = 5_000_000
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 64  # longer digit strings are no sensible width or latency


def parse_literal(text: str, *, source: str = "<literal>") -> Any:
    """Parse nested lists/tuples of ints, floats and strings; anything else is an error."""
    if len(text) > MAX_CHARS:
        raise DensenasError(f"{source}: literal longer than {MAX_CHARS} characters")
    pos = 0
    stack: list[list] = []
    result: Any = None
    done = False
    expect_value = True
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            break
        if done:
            raise DensenasError(f"{source}: unexpected text at character {pos}: {text[pos:pos + 20]!r}")
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise DensenasError(f"{source}: not a plain literal at character {pos}: {text[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        if kind == "open":
            if not expect_value:
                raise DensenasError(f"{source}: missing comma before character {m.start()}")
            if len(stack) >= MAX_DEPTH:
                raise DensenasError(f"{source}: nested deeper than {MAX_DEPTH}")
            stack.append([])
            continue
        if kind == "comma":
            if expect_value or not stack:
                raise DensenasError(f"{source}: unexpected comma at character {m.start()}")
            expect_value = True
            continue
        if kind == "close":
            if not stack:
                raise DensenasError(f"{source}: unbalanced bracket at character {m.start()}")
            value: Any = stack.pop()
        elif kind == "num":
            if not expect_value:
                raise DensenasError(f"{source}: missing comma before character {m.start()}")
            raw = m.group("num")
            if len(raw) > MAX_NUMBER_CHARS:
                raise DensenasError(f"{source}: number at character {m.start()} is {len(raw)} characters long")
            value = float(raw) if any(c in raw for c in ".eE") else int(raw)
        else:
            if not expect_value:
                raise DensenasError(f"{source}: missing comma before character {m.start()}")
            value = m.group("str")[1:-1]
        if stack:
            stack[-1].append(value)
            expect_value = False
        else:
            result, done = value, True
    if stack or not done:
        raise DensenasError(f"{source}: incomplete literal (unbalanced brackets or empty)")
    return result
