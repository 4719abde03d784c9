"""Two processes with gloo on CPU: both ranks sample the same paths, average the arch
gradients explicitly, and end with identical architecture parameters."""

from __future__ import annotations

import json

import pytest
import torch.distributed as dist

from tests.search.conftest import run_search_cli as run_cli


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch built without gloo")
def test_two_gloo_processes_end_with_identical_arch_params(tmp_path, tiny_lut):
    out = tmp_path / "run"
    proc = run_cli("search", "--nproc", "2", "--lut", str(tiny_lut), "--out", str(out), "--epochs", "2",
               "--arch-update-epoch", "0", "--batch-size", "16", "--max-steps", "2", "--json", timeout=600)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # rank 0 alone prints
    assert report["world_size"] == 2
    check = report["rank_check"]
    assert check["world_size"] == 2
    assert check["rank_arch_max_diff"] == 0.0
    assert check["rank_weight_checksum_max_diff"] <= 1e-6
    history = json.loads((out / "history.json").read_text())
    assert all(e["arch_steps"] == 2 and e["rank_arch_max_diff"] == 0.0 for e in history["epochs"])
    # the arch parameters did move, so identical values are not identical initial values
    init = history["initial"]["expected_latency_ms"]
    assert history["epochs"][-1]["expected_latency_ms"] != init
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and run["settings"]["world_size"] == 2
