"""The OpenVINO backend as densenas sees it once this distribution is installed: found
by its entry point, complete, numerically the op it was given, recording how it ran,
and usable end to end from the CLI (profile a space into a LUT, bench a network)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ov = pytest.importorskip("openvino", reason="openvino is not installed (pip install ./plugins/openvino)")
torch = pytest.importorskip("torch")
pytest.importorskip("densenas_openvino", reason="densenas-openvino is not installed (pip install ./plugins/openvino)")

from torch import nn  # noqa: E402

from densenas.profilers import Protocol, get_profiler_class, list_profilers  # noqa: E402
from densenas_openvino import OpenVINOProfiler  # noqa: E402

FAST = Protocol(warmup_s=0.005, min_sample_s=0.0002, min_rounds=1, max_rounds=2, samples_per_round=2)

# two blocks and the final conv, 32x32 input: a few ops, so profiling takes seconds
SPACE = """\
name: ov-micro
input_size: 32
num_classes: 10
stem: mbv2
init_dim: 8
head_dim: 8
last_dim: 32
primitives:
  head: [mbconv_k3_t3]
  stack: [mbconv_k3_t3, skip_connect]
adjoin_connect_nums: [2, 2, 2]
blocks:
  ch: [8, 12, 16]
  fm: [16, 8, 8]
  stage: [0, 1, 1, 2]
  num_layers: [0, 1, 1]
"""
NET_CONFIG = ("[[8, 8], 'mbconv_k3_t1', [], 0, 1]|[[8, 12], 'mbconv_k3_t3', ['mbconv_k3_t3'], 1, 2]|"
              "[[12, 16], 'mbconv_k3_t3', [], 0, 1]|[[16, 32], 'conv1_1']")


def densenas(*args: str, cwd: Path) -> dict:
    """The real CLI in a subprocess, as a user runs it; its one JSON object."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DENSENAS_PROFILE_PROTOCOL": "fast"}
    proc = subprocess.run([sys.executable, "-m", "densenas", *args, "--json"], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


def test_registered_by_its_entry_point_and_complete() -> None:
    assert "openvino" in list_profilers()
    assert get_profiler_class("openvino") is OpenVINOProfiler
    assert OpenVINOProfiler.missing_parts() == []
    ok, reason = OpenVINOProfiler.available()
    assert ok and reason.startswith(f"openvino: OpenVINO {ov.__version__}")


def test_the_compiled_op_computes_what_torch_computes() -> None:
    conv = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6()).eval()
    profiler = OpenVINOProfiler(threads=1, protocol=FAST)
    with profiler:
        prepared = profiler._prepare(conv, (1, 8, 12, 12))
        prepared.run(1)
        got = prepared.request.get_output_tensor(0).data
        with torch.no_grad():
            want = conv(profiler.example_input((1, 8, 12, 12))).numpy()
        assert abs(got - want).max() < 1e-4  # fp32 inference, not bf16
        x = torch.randn(1, 8, 12, 12)
        with torch.no_grad():
            assert abs(prepared.infer(x.numpy()) - conv(x).numpy()).max() < 1e-4  # any input, not only the timed one
        assert prepared.compiled.get_property("INFERENCE_NUM_THREADS") == 1
        assert prepared.compiled.get_property("NUM_STREAMS") == 1
        prepared.close()


def test_measure_and_fingerprint_record_threads_precision_and_version() -> None:
    profiler = OpenVINOProfiler(threads=2, protocol=FAST)
    m = profiler.measure(nn.Conv2d(8, 8, 3, padding=1), (1, 8, 16, 16))
    assert m.median_ms > 0 and m.samples > 0
    fp = profiler.fingerprint()
    assert fp["backend"] == "openvino" and fp["threads"] == 2 and fp["precision"] == "fp32"
    assert fp["backend_version"] == ov.__version__.split("-")[0]
    assert fp["compile_config"] == {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 2,
                                    "INFERENCE_PRECISION_HINT": "f32"}


def test_fp16_is_refused_naming_the_backend() -> None:
    from densenas.profilers import ProfilerError

    with pytest.raises(ProfilerError, match="openvino: precision 'fp16' is not supported on this backend"):
        OpenVINOProfiler(precision="fp16")


def test_profile_a_space_into_a_lut_then_bench_a_network_from_the_cli(tmp_path: Path) -> None:
    space = tmp_path / "ov-micro.yaml"
    space.write_text(SPACE)
    lut = tmp_path / "ov.json"
    res = densenas("profile", "--space", str(space), "--backend", "openvino", "--threads", "1", "--out", str(lut),
                   cwd=tmp_path)
    assert res["complete"] and res["backend"] == "openvino" and res["threads"] == 1
    meta = json.loads(lut.read_text())["meta"]
    assert meta["backend"] == "openvino" and meta["host"]["compile_config"]["INFERENCE_NUM_THREADS"] == 1

    arch = tmp_path / "arch.json"
    densenas("arch", "import", NET_CONFIG, "--space", str(space), "--out", str(arch), cwd=tmp_path)
    bench = densenas("bench", "--arch", str(arch), "--backend", "openvino", "--lut", str(lut), cwd=tmp_path)
    assert bench["backend"] == "openvino" and bench["median_ms"] > 0 and bench["threads"] == 1
