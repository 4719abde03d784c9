"""benchmarks/seed_agreement.py end to end on tiny searches: the table it prints, and
searches kept with --runs reused rather than run again."""

from __future__ import annotations

from benchmarks import seed_agreement as bench


def test_two_seeds_are_compared_and_kept_searches_reused(tmp_path, tiny_lut, capsys):
    argv = ["--lut", str(tiny_lut), "--epochs", "1", "--max-steps", "2", "--runs", str(tmp_path), "--no-write"]
    assert bench.main(argv) == 0
    first = capsys.readouterr().out
    assert "| 1, 2 |" in first and "seed 1: supernet val top-1" in first
    stamps = {s: (tmp_path / f"seed{s}" / "checkpoint.pt").stat().st_mtime_ns for s in (1, 2)}
    assert bench.main(argv) == 0
    again = capsys.readouterr().out
    assert {s: (tmp_path / f"seed{s}" / "checkpoint.pt").stat().st_mtime_ns for s in (1, 2)} == stamps
    assert again.splitlines()[2] == first.splitlines()[2]  # the same searches, the same agreement row
