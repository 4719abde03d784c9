"""Benchmarks share one writer for their sections of RESULTS.md and the docs."""

from __future__ import annotations

from benchmarks.results import write_section


def test_a_section_is_replaced_in_place_and_the_rest_kept(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nintro\n\n<!-- a:begin -->\nold a\n<!-- a:end -->\n\ntail\n")
    write_section("new a\n", "a", path=path)
    assert path.read_text() == "# Results\n\nintro\n\n<!-- a:begin -->\nnew a\n<!-- a:end -->\n\ntail\n"


def test_a_missing_section_is_appended_under_its_title(tmp_path):
    path = tmp_path / "RESULTS.md"
    write_section("figures", "b", path=path, title="B benchmark")
    write_section("more", "c", path=path)
    assert path.read_text() == (
        "# Benchmark results\n\n## B benchmark\n\n<!-- b:begin -->\nfigures\n<!-- b:end -->\n"
        "\n<!-- c:begin -->\nmore\n<!-- c:end -->\n"
    )
