"""A search killed with SIGKILL and resumed ends exactly where an uninterrupted one does; a
run whose settings were written before they had a version still resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from densenas.errors import DensenasError
from densenas.search import RunSettings, SearchOptions, run_search
from densenas.search.checkpoint import load_checkpoint, save_checkpoint
from densenas.search.settings import fresh

from tests.search.conftest import run_search_cli as run_cli

ARGS = ["--epochs", "3", "--arch-update-epoch", "1", "--batch-size", "16", "--max-steps", "3", "--seed", "11"]


def _cmd(lut, out, *extra):
    return [sys.executable, "-m", "densenas", "search", "--lut", str(lut), "--out", str(out), *ARGS, *extra]


def _env():
    # one thread: the same float reduction order in every process of the comparison
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def test_resume_after_sigkill_gives_the_uninterrupted_result(tmp_path, tiny_lut):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    ref = subprocess.run(_cmd(tiny_lut, whole, "--json"), capture_output=True, text=True, env=_env(), timeout=600)
    assert ref.returncode == 0, ref.stderr

    proc = subprocess.Popen(_cmd(tiny_lut, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    ckpt = killed / "checkpoint.pt"
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the search ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert load_checkpoint(ckpt)["epoch"] < 2  # killed part-way

    resumed = subprocess.run(_cmd(tiny_lut, killed, "--resume", "--json"), capture_output=True, text=True,
                             env=_env(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr

    a = json.loads((whole / "arch_params.json").read_text())
    b = json.loads((killed / "arch_params.json").read_text())
    for key in ("betas", "head_alphas", "stack_alphas"):
        for x, y in zip(a[key], b[key]):
            assert torch.allclose(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64),
                                  rtol=0, atol=1e-6), key
    assert (whole / "arch.json").read_text() == (killed / "arch.json").read_text()
    ha = json.loads((whole / "history.json").read_text())["epochs"]
    hb = json.loads((killed / "history.json").read_text())["epochs"]
    assert [e["epoch"] for e in hb] == [0, 1, 2]
    for ea, eb in zip(ha, hb):
        for key in ("train_loss", "val_loss", "expected_latency_ms", "lr"):
            assert abs(ea[key] - eb[key]) <= 1e-6 * max(1.0, abs(ea[key])), (ea["epoch"], key)
    wa, wb = load_checkpoint(whole / "checkpoint.pt"), load_checkpoint(killed / "checkpoint.pt")
    for name, t in wa["model"].items():
        assert torch.allclose(t.double(), wb["model"][name].double(), rtol=0, atol=1e-6), name


def test_resume_refuses_settings_that_would_change_the_results(tmp_path, tiny_lut):
    out = tmp_path / "run"
    run_search(SearchOptions(lut=str(tiny_lut), out=str(out), epochs=2, arch_update_epoch=1, batch_size=16, max_steps=1))
    again = run_cli("search", "--lut", str(tiny_lut), "--out", str(out), "--resume", "--batch-size", "32")
    assert again.returncode == 2 and "--batch-size 32 differs from the run's 16" in again.stderr
    # the same settings (here: none given) continue; a finished search has nothing left to do
    done = run_cli("search", "--out", str(out), "--resume", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["epochs_done"] == 2


def _as_version_1(settings: RunSettings) -> dict:
    """The settings as run.json and checkpoints held them before they had a version."""
    d = settings.model_dump()
    del d["version"]
    d["cost_type"], d["target_latency_ms"] = d.pop("cost"), d.pop("target_latency")
    s = settings.search
    d.update(val_start_epoch=s.val_start_epoch, log_base=s.cost.log_base, sample_policy=s.sample_policy,
             weight_sample_num=s.weight_sample_num)
    return d


def test_version_1_settings_read_as_the_same_settings(tiny_lut):
    now = fresh(SearchOptions(lut=str(tiny_lut), epochs=2, cost="latency", target_latency=1.5, seed=4))
    old = _as_version_1(now)
    assert RunSettings.from_dict(old, source="run.json") == now
    with pytest.raises(DensenasError, match="run.json settings: field epochs"):
        RunSettings.from_dict({k: v for k, v in old.items() if k != "epochs"}, source="run.json")


def test_a_run_checkpointed_with_version_1_settings_resumes(tmp_path, tiny_lut):
    out = tmp_path / "run"
    run_search(SearchOptions(lut=str(tiny_lut), out=str(out), epochs=2, arch_update_epoch=1, batch_size=16, max_steps=1))
    state = load_checkpoint(out / "checkpoint.pt")
    state["settings"] = _as_version_1(RunSettings.from_dict(state["settings"], source="checkpoint"))
    save_checkpoint(out / "checkpoint.pt", state)
    refused = run_cli("search", "--out", str(out), "--resume", "--batch-size", "32")
    assert refused.returncode == 2 and "--batch-size 32 differs from the run's 16" in refused.stderr
    done = run_cli("search", "--out", str(out), "--resume", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["epochs_done"] == 2
