"""The README's main job, `densenas quickstart`, end to end through the real CLI (one
search epoch and the fast profiling protocol, so it takes seconds, not minutes)."""

from __future__ import annotations

import json

from densenas.arch import load_arch
from densenas.lut.store import LatencyTable
from tests.conftest import run_cli

FAST = {"DENSENAS_PROFILE_PROTOCOL": "fast", "OMP_NUM_THREADS": "1"}


def test_quickstart_profiles_searches_exports_and_measures_then_resumes(tmp_path):
    out = tmp_path / "qs"
    first = run_cli("quickstart", "--out", str(out), "--epochs", "1", "--networks", "8", "--json", env=FAST)
    assert first.returncode == 0, first.stderr
    d = json.loads(first.stdout)
    assert LatencyTable.load(d["lut"]).backend == "onnxruntime" and d["lut_rows"] == 96
    arch = load_arch(d["arch"])
    assert d["net_config"] == arch.to_dict()["net_config"] and d["space"] == "mbv2-tiny"
    assert (out / "model.onnx").is_file() and d["onnx"] == str(out / "model.onnx")
    assert d["onnx_max_abs_diff"] < 1e-4
    assert d["predicted_latency_ms"] > 0 and d["measured_latency_ms"] > 0 and d["macs"] > 0
    ref = d["lut_refinement"]  # in-context costs fitted, scored on held-out networks beside the noise floor
    assert ref["held_out"]["refined"]["samples"] == ref["noise_floor"]["samples"] == 4
    for step in ("[1/4] profiling", "[2/4] searching", "[3/4] exporting", "[4/4] measuring"):
        assert step in first.stderr
    # the same directory again: nothing is profiled or searched twice, the same network comes out
    again = run_cli("quickstart", "--out", str(out), "--json", env=FAST)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["net_config"] == d["net_config"]


def test_a_shorter_quickstart_search_keeps_the_warm_up_share():
    from densenas.quickstart import warmup_epochs

    assert warmup_epochs(12) == 4  # the space's own 4 of 12
    assert [warmup_epochs(n) for n in (1, 2, 3, 6, 24)] == [0, 1, 1, 2, 8]
