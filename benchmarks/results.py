"""Each benchmark owns one marked section of a results file (RESULTS.md, a doc page) and
rewrites only that section, so the benchmarks can run in any order."""

from __future__ import annotations

from pathlib import Path

from densenas.fileio import write_text

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(text: str, section: str, *, path: Path = RESULTS, title: str | None = None) -> None:
    """Replace the text between ``<!-- section:begin -->`` and ``<!-- section:end -->`` in
    ``path``, or append the section (under ``## title`` when given) if it is not there yet."""
    begin, end = f"<!-- {section}:begin -->", f"<!-- {section}:end -->"
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if begin in old and end in old:
        rest = old[old.index(end) + len(end):].lstrip("\n")
        new = old[: old.index(begin)] + block + ("\n" + rest if rest else "")
    else:
        heading = f"## {title}\n\n" if title else ""
        new = old.rstrip("\n") + "\n\n" + heading + block
    write_text(path, new)
