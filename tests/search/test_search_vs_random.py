"""The pieces of benchmarks/search_vs_random.py that decide what is compared: random
networks drawn at the searched network's latency, and the report it writes."""

from __future__ import annotations

from benchmarks import search_vs_random as bench
from densenas.cost import arch_cost
from densenas.lut.networks import sample_archs
from densenas.lut.store import load_lut
from densenas.space import SearchSpace


def test_random_networks_lie_within_the_window_and_exclude_the_searched_one(tiny_lut):
    space, lut = SearchSpace.load("mbv2-tiny"), load_lut(tiny_lut)
    searched = sample_archs(space, 1, seed=5)[0]
    target = float(arch_cost(searched, lut).total)
    picked, tried = bench._random_at(space, lut, target, 5, 0.03, 0, searched.to_dict()["net_config"])
    assert len(picked) == 5 and tried >= 5
    configs = {a.to_dict()["net_config"] for a, _ in picked}
    assert len(configs) == 5 and searched.to_dict()["net_config"] not in configs
    for arch, ms in picked:
        assert abs(ms / target - 1) <= 0.03 and ms == float(arch_cost(arch, lut).total)


def test_report_states_rank_sign_test_and_tau():
    args = dict(space="mbv2-tiny", data="digits-clutter", search_epochs=None, search_seed=1, train_epochs=4,
                random=2, seeds=[0, 1], tolerance=0.03, draw_seed=0, device="cpu", lut=None, jobs=2)
    r = {"args": args, "latency_ms": 0.2, "search_top1": 80.0, "search_derived_top1": 70.0, "net_config": "x",
         "random_latency_ms": [0.201, 0.199], "random_drawn": 40, "inherited_top1": [70.0, 60.0, 65.0],
         "retrained_top1": [[90.0, 91.0], [85.0, 86.0], [88.0, 92.0]], "mean_top1": [90.5, 85.5, 90.0],
         "rank": 1, "of": 3, "median_random_top1": 87.75, "wins": 3, "losses": 1, "sign_p": 0.3125,
         "kendall_tau": 1.0, "kendall_p": 1.0, "seed_pairs_tau": 0.33, "seed_vs_rest_tau": None,
         "wall_s": 60.0, "threads": 1}
    text = bench.markdown(r)
    assert "**1 of 3**" in text and "3 wins, 1 losses" in text and "**1.00**" in text and "beats the median" in text
    assert "| random 2 | 0.1990 | 65.0 | 88.0, 92.0 | 90.00 |" in text
    assert "--train-epochs 4 --random 2 --seeds 0 1 --jobs 2`" in text and "--space" not in text
    assert "one seed against another 0.33, one seed against the mean of the others n/a" in text


def test_retraining_agreement_is_the_seeds_ranking_each_other():
    same = [[70.0, 71.0, 72.0], [75.0, 76.0, 77.0], [80.0, 81.0, 82.0], [60.0, 61.0, 62.0]]
    assert bench.retraining_agreement(same) == (1.0, 1.0)
    # seed 1 ranks the networks in reverse of seeds 0 and 2
    mixed = [[70.0, 90.0, 70.0], [75.0, 80.0, 75.0], [80.0, 70.0, 80.0], [85.0, 60.0, 85.0]]
    pairs, rest = bench.retraining_agreement(mixed)
    assert abs(pairs - (1.0 - 1.0 - 1.0) / 3) < 1e-9
    assert rest < 0.5
    assert bench.retraining_agreement([[70.0], [80.0], [90.0]]) == (None, None)


def test_a_kept_search_is_reused_not_run_again(tmp_path, tiny_lut):
    import argparse

    args = argparse.Namespace(space="mbv2-tiny", lut=str(tiny_lut), data="digits", search_epochs=1, search_seed=1,
                              arch_update_epoch=None, device="cpu", max_steps=2, search_dir=tmp_path / "search")
    first = bench._search(args, tmp_path / "unused")
    assert (tmp_path / "search" / "checkpoint.pt").is_file() and not (tmp_path / "unused").exists()
    stamp = (tmp_path / "search" / "checkpoint.pt").stat().st_mtime_ns
    again = bench._search(args, tmp_path / "unused")
    assert again.arch.to_dict() == first.arch.to_dict() and again.epochs_done == 1
    assert (tmp_path / "search" / "checkpoint.pt").stat().st_mtime_ns == stamp


def test_report_shows_the_few_step_scores_beside_their_control():
    args = dict(space="mbv2-tiny", data="digits-clutter", search_epochs=36, arch_update_epoch=8, search_seed=1,
                train_epochs=4, random=2, seeds=[0, 1], tolerance=0.03, draw_seed=0, device="cpu", lut=None, jobs=2,
                tune_steps=10)
    r = {"args": args, "latency_ms": 0.2, "search_top1": 80.0, "search_derived_top1": 70.0, "net_config": "x",
         "random_latency_ms": [0.201, 0.199], "random_drawn": 40, "inherited_top1": [70.0, 60.0, 65.0],
         "retrained_top1": [[90.0, 91.0], [85.0, 86.0], [88.0, 92.0]], "mean_top1": [90.5, 85.5, 90.0],
         "rank": 1, "of": 3, "median_random_top1": 87.75, "wins": 3, "losses": 1, "sign_p": 0.3125,
         "kendall_tau": 1.0, "kendall_p": 1.0, "seed_pairs_tau": 0.33, "seed_vs_rest_tau": None,
         "tune_steps": 10, "tuned_top1": [75.0, 61.0, 66.0], "tuned_tau": 1.0, "tuned_p": 1.0,
         "scratch_top1": [12.0, 11.0, 10.0], "scratch_tau": -1.0, "scratch_p": 1.0,
         "params": [3, 2, 1], "params_tau": -1.0, "params_p": 1.0, "macs": [1, 2, 3], "macs_tau": 1.0, "macs_p": 1.0,
         "wall_s": 60.0, "threads": 1}
    text = bench.markdown(r)
    assert "parameters tau -1.00 (p = 1), MACs 1.00 (p = 1)" in text
    assert "| random 2 | 0.1990 | 65.0 | 66.0 (10.0) | 88.0, 92.0 | 90.00 |" in text
    assert "after 10 SGD steps" in text and "from scratch: -1.00" in text and "--tune-steps 10`" in text


def test_networks_are_scored_inherited_then_after_a_few_steps_and_from_scratch(tmp_path, tiny_lut):
    import argparse

    args = argparse.Namespace(space="mbv2-tiny", lut=str(tiny_lut), data="digits", search_epochs=1, search_seed=1,
                              arch_update_epoch=None, device="cpu", max_steps=2, search_dir=tmp_path / "search",
                              tune_steps=3)
    result = bench._search(args, tmp_path / "unused")
    archs = [result.arch, *sample_archs(SearchSpace.load("mbv2-tiny"), 2, seed=3)]
    scores = bench._supernet_scores(result, archs, args)
    assert {k: len(v) for k, v in scores.items()} == {"inherited": 3, "tuned": 3, "scratch": 3}
    assert all(0.0 <= x <= 100.0 for v in scores.values() for x in v)
    assert scores == bench._supernet_scores(result, archs, args)  # seeded: the same scores again
    args.tune_steps = 0
    assert bench._supernet_scores(result, archs, args)["tuned"] == []
