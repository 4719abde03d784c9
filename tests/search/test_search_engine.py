"""The search engine end to end on the tiny space: files, the cost term's effect, the
latency target, LUT checks and the divergence guard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from densenas.arch import load_arch
from densenas.arch_params import load_arch_params
from densenas.cost import arch_cost
from densenas.errors import DensenasError
from densenas.lut.store import LatencyTable, load_lut
from densenas.search import SearchOptions, run_search
from densenas.search.checkpoint import CHECKPOINT_SCHEMA, load_checkpoint
from densenas.space import SearchSpace
from tests.conftest import assert_user_error
from tests.search.conftest import build_lut, run_search_cli as run_cli, write_space

FAST = dict(batch_size=16)


def test_cli_search_writes_every_run_file_and_one_json_object(tmp_path, tiny_lut):
    out = tmp_path / "run"
    proc = run_cli("search", "--lut", str(tiny_lut), "--epochs", "2", "--arch-update-epoch", "1",
                   "--batch-size", "16", "--max-steps", "2", "--seed", "3", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # exactly one JSON object on stdout
    for key in ("run_dir", "arch", "arch_params", "checkpoint", "latency_ms", "expected_latency_ms",
                "macs", "params", "top1", "epochs"):
        assert key in report, key
    assert report["epochs"] == 2 and report["run_dir"] == str(out)
    arch = load_arch(out / "arch.json")
    space = SearchSpace.load("mbv2-tiny")
    load_arch_params(out / "arch_params.json").validate(space)
    # the reported latency is the derived network's, as `predict` would compute it
    assert report["latency_ms"] == pytest.approx(arch_cost(arch, load_lut(tiny_lut)).total, rel=1e-9)
    assert report["macs"] > 0 and report["params"] > 0 and 0 <= report["top1"] <= 100
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["schema"] == CHECKPOINT_SCHEMA and state["epoch"] == 1
    assert {"model", "weight_optimizer", "arch_optimizer", "scheduler", "rng", "sampler", "history"} <= set(state)
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    run = json.loads((out / "run.json").read_text())
    assert run["num_classes"] == 10 and run["seed"] == 3 and run["lut"] == str(tiny_lut)
    assert run["settings"]["epochs"] == 2 and "torch" in run["versions"]
    history = json.loads((out / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in history] == [0, 1]
    assert "arch_loss" not in history[0] and history[1]["arch_steps"] == 2  # warm-up, then search
    for e in history:
        assert e["expected_latency_ms"] > 0 and e["derived_latency_ms"] > 0
        assert 0 < e["head_entropy"] <= e["head_entropy_max"] + 1e-9
        assert sum(e["op_mix"]["counts"].values()) >= len(arch.blocks)
        # what the supernet knows: its argmax path, three random single paths, the derived network
        assert 0 <= e["derived_val_top1"] <= 100 and 0 <= e["argmax_path_val_top1"] <= 100
        assert len(e["random_paths_val_top1"]) == 3 and all(0 <= v <= 100 for v in e["random_paths_val_top1"])
    assert "paths: argmax" in proc.stderr and "derived network (inherited)" in proc.stderr
    # two steps of training leave the supernet at chance: said once the warm-up is over
    if history[1]["argmax_path_val_top1"] < 15:
        assert "at chance after the warm-up" in proc.stderr
    # the per-epoch summary shows expected and derived latency side by side, and the op mix
    assert "expected" in proc.stderr and "derived" in proc.stderr and "skip" in proc.stderr
    # the derived network exports with the weights it had in the supernet
    exported = run_cli("export", "--arch", str(out / "arch.json"), "--weights", str(out / "checkpoint.pt"),
                       "--format", "onnx", "--out", str(tmp_path / "inherited.onnx"), "--json")
    assert exported.returncode == 0, exported.stderr
    assert "search checkpoint, epoch 1" in json.loads(exported.stdout)["weights"]


def _search(tmp_path: Path, lut: Path, name: str, space: Path, **kw) -> dict:
    out = tmp_path / name
    run_search(SearchOptions(space=str(space), lut=str(lut), out=str(out), **{**FAST, **kw}))
    return json.loads((out / "history.json").read_text())


def _fast_space(tmp_path: Path) -> Path:
    # arch updates dominated by the cost term and fast enough that a few steps show the trend
    return write_space(tmp_path / "fast.yaml", arch={"alpha_lr": 0.05, "beta_lr": 0.05, "weight_decay": 0.0})


def test_cost_term_lowers_expected_latency_and_zero_factor_does_not(tmp_path, tiny_lut):
    space = _fast_space(tmp_path)
    common = dict(epochs=2, arch_update_epoch=0, seed=1, max_steps=8)
    with_cost = _search(tmp_path, tiny_lut, "with", space, sub_loss_factor=20.0, **common)
    without = _search(tmp_path, tiny_lut, "without", space, sub_loss_factor=0.0, **common)
    start = with_cost["initial"]["expected_latency_ms"]
    assert without["initial"]["expected_latency_ms"] == start  # same seed, same starting point
    drop_with = 1 - with_cost["epochs"][-1]["expected_latency_ms"] / start
    drop_without = 1 - without["epochs"][-1]["expected_latency_ms"] / start
    assert drop_with > 0.08, drop_with
    assert drop_with > 3 * abs(drop_without), (drop_with, drop_without)


@pytest.mark.parametrize("target", [0.11, 0.15])
def test_target_latency_lands_the_derived_network_within_10_percent(tmp_path, tiny_lut, target):
    # the initial derived network of this seed costs 0.145 ms: one target below it, one above
    lut = load_lut(tiny_lut)
    history = _search(tmp_path, tiny_lut, "run", _fast_space(tmp_path), epochs=3, arch_update_epoch=0,
                      sub_loss_factor=20.0, target_latency=target, seed=1, max_steps=8)
    last = history["epochs"][-1]
    arch = load_arch(tmp_path / "run" / "arch.json")
    assert arch_cost(arch, lut).total == pytest.approx(last["derived_latency_ms"])
    assert abs(last["derived_latency_ms"] / target - 1) <= 0.10, (target, last["derived_latency_ms"])


def test_lut_missing_an_op_is_refused_before_training(tmp_path):
    space = SearchSpace.load("mbv2-tiny")
    full = build_lut(space)
    dropped = sorted(full.rows)[0]
    partial = LatencyTable(full.meta, [r for k, r in full.rows.items() if k != dropped])
    path = partial.save(tmp_path / "partial.json")
    out = tmp_path / "run"
    proc = run_cli("search", "--lut", str(path), "--out", str(out), "--max-steps", "1")
    missing = full.rows[dropped].signature
    assert_user_error(proc, "lacks 1 of", str(missing), str(path))
    assert not (out / "checkpoint.pt").exists() and not (out / "arch.json").exists()


def test_unknown_lut_and_bad_options_are_one_line_errors(tmp_path, tiny_lut):
    assert_user_error(run_cli("search", "--lut", str(tmp_path / "nope.json")), "nope.json", "not found")
    assert_user_error(run_cli("search", "--lut", str(tiny_lut), "--epochs", "2", "--arch-update-epoch", "2"),
                      "--arch-update-epoch 2")
    assert_user_error(run_cli("search", "--lut", str(tiny_lut), "--cost", "flops", "--target-latency", "1"),
                      "--target-latency")
    assert_user_error(run_cli("search", "--resume"), "--resume needs --out")


def _assert_stopped(proc, *needles: str) -> None:
    """Exit 2, no traceback, and the search's last word is one error line naming the cause."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    assert errors[0].startswith("error: search stopped: ")
    for n in needles:
        assert n in errors[0], (n, errors[0])


def test_diverging_arch_parameters_stop_the_search_and_keep_the_last_checkpoint(tmp_path, tiny_lut):
    # an absurd arch learning rate overflows the alphas in the first arch step (the second epoch)
    space = write_space(tmp_path / "diverge.yaml", arch={"alpha_lr": 1.0e38, "beta_lr": 1.0e38})
    out = tmp_path / "run"
    proc = run_cli("search", "--space", str(space), "--lut", str(tiny_lut), "--epochs", "3",
                   "--arch-update-epoch", "1", "--batch-size", "16", "--max-steps", "2", "--out", str(out))
    _assert_stopped(proc, "architecture parameters are no longer finite (epoch 1,", "after epoch 1) is intact")
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    params = load_arch_params(out / "arch_params.json")  # written after the first epoch, finite
    assert all(math.isfinite(x) for row in params.betas for x in row)


def test_non_finite_loss_stops_every_step_with_one_line(tmp_path, tiny_lut):
    # an absurd weight learning rate: the loss leaves the finite numbers within a few weight steps
    space = write_space(tmp_path / "diverge.yaml", weight={"init_lr": 1.0e38})
    out = tmp_path / "run"
    proc = run_cli("search", "--space", str(space), "--lut", str(tiny_lut), "--epochs", "2",
                   "--arch-update-epoch", "1", "--batch-size", "16", "--max-steps", "8", "--out", str(out))
    _assert_stopped(proc, "the loss became", "(epoch 0, weight step", "no checkpoint had been written")
    assert not (out / "checkpoint.pt").exists()


def test_existing_run_directory_is_not_overwritten_without_resume(tmp_path, tiny_lut):
    out = tmp_path / "run"
    run_search(SearchOptions(lut=str(tiny_lut), out=str(out), epochs=1, arch_update_epoch=0, batch_size=16, max_steps=1))
    with pytest.raises(DensenasError, match="already holds a search"):
        run_search(SearchOptions(lut=str(tiny_lut), out=str(out), epochs=1, arch_update_epoch=0, batch_size=16, max_steps=1))


def test_a_search_on_sampled_routes_trains_one_route_a_step_and_is_seeded(tmp_path, tiny_lut):
    common = dict(epochs=2, arch_update_epoch=1, seed=4, max_steps=3)
    routes = write_space(tmp_path / "routes.yaml", routes="sampled")
    first = _search(tmp_path, tiny_lut, "a", routes, **common)
    again = _search(tmp_path, tiny_lut, "b", routes, **common)
    dense = _search(tmp_path, tiny_lut, "dense", write_space(tmp_path / "dense.yaml"), **common)
    losses = lambda h: [e["train_loss"] for e in h["epochs"]]  # noqa: E731
    assert losses(first) == losses(again)  # the route is drawn from the step's seed
    assert losses(first) != losses(dense)  # and it is not the dense supernet
    assert all(math.isfinite(v) for v in losses(first))
