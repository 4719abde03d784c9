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


def test_agreement_is_judged_against_rows_shuffled_among_themselves():
    import numpy as np

    rng = np.random.default_rng(0)
    a = {("stack_alphas", i, 0): rng.normal(size=5) for i in range(30)}
    same = bench.agreement(a, {k: v + 0.01 * rng.normal(size=5) for k, v in a.items()}, seed=0)
    assert same["r"] > 0.99 and same["argmax_agree"] == 1.0
    assert same["p"] < 0.01 and same["argmax_p"] < 0.01 and same["argmax_null_mean"] < 0.5
    # every row preferring op 0 agrees everywhere, and so does every shuffle: no evidence
    biased = {k: np.array([3.0, 0, 0, 0, 0]) + 0.1 * rng.normal(size=5) for k in a}
    other = {k: np.array([3.0, 0, 0, 0, 0]) + 0.1 * rng.normal(size=5) for k in a}
    res = bench.agreement(biased, other, seed=0)
    assert res["argmax_agree"] == 1.0 and res["argmax_null_mean"] == 1.0 and res["argmax_p"] == 1.0


def test_all_pairs_are_tested_together_against_one_shuffle_per_seed():
    import numpy as np

    rng = np.random.default_rng(1)
    base = {("stack_alphas", i, 0): rng.normal(size=4) for i in range(40)}
    related = [{k: v + 0.5 * rng.normal(size=4) for k, v in base.items()} for _ in range(3)]
    unrelated = [{k: rng.normal(size=4) for k in base} for _ in range(3)]
    together = bench.pooled_agreement(related, seed=0)
    assert together["pairs"] == 3 and together["r"] > 0.5 and together["p"] < 0.01
    apart = bench.pooled_agreement(unrelated, seed=0)
    assert abs(apart["r"]) < 0.2 and apart["p"] > 0.01
    assert abs(apart["null_mean"]) < 0.05 and apart["null_95"] > apart["null_mean"]
