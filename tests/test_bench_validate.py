"""densenas bench and lut validate: end-to-end timing beside the LUT's prediction, the
accuracy report, and calibration stored in the LUT. No assertion here depends on how
fast or how steady this machine is: accuracy figures belong in benchmarks/."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from densenas.arch import fit_to_space
from densenas.cost import arch_cost
from densenas.errors import DensenasError
from densenas.lut.profile import parse_protocol, profile_space
from densenas.lut.store import LatencyTable, load_lut
from densenas.space import SearchSpace
from densenas.lut.networks import accuracy, random_arch, sample_archs
from densenas.lut.validate import cross_validated, fit_calibration, validate_lut

MICRO_YAML = """
name: micro
input_size: 16
num_classes: 10
stem: mbv2
init_dim: 8
head_dim: 8
last_dim: 32
primitives:
  head: [mbconv_k3_t3, mbconv_k5_t3]
  stack: [mbconv_k3_t3, skip_connect]
adjoin_connect_nums: [2, 2, 2, 2]
blocks:
  ch: [8, 12, 16, 24]
  fm: [8, 4, 4, 2]
  stage: [0, 1, 1, 2, 3]
  num_layers: [0, 1, 1, 1]
"""


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> dict[str, Path]:
    """A 20-op space profiled on torch-cpu and onnxruntime with the fast protocol."""
    root = tmp_path_factory.mktemp("micro")
    space = root / "micro.yaml"
    space.write_text(MICRO_YAML)
    paths = {"space": space}
    for backend in ("torch-cpu", "onnxruntime"):
        out = root / f"{backend}.json"
        profile_space(str(space), backend, threads=1, out=out, protocol=parse_protocol("fast"))
        paths[backend] = out
    return paths


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "densenas", *args], capture_output=True, text=True, timeout=300)


# -- sampling and scoring: pure functions ---------------------------------------------------


def test_random_archs_are_seeded_distinct_and_fit_their_space():
    space = SearchSpace.load("mbv2-tiny")
    a = sample_archs(space, 8, seed=5)
    b = sample_archs(space, 8, seed=5)
    assert [x.to_dict() for x in a] == [x.to_dict() for x in b]
    configs = {x.to_dict()["net_config"] for x in a}
    assert len(configs) == 8
    assert configs != {x.to_dict()["net_config"] for x in sample_archs(space, 8, seed=6)}
    for arch in a:
        assert fit_to_space(arch, space) == arch
        assert all("skip_connect" not in blk.stack_ops for blk in arch.blocks)
    # routes vary: not every network visits the same blocks
    assert len({tuple(blk.block_id for blk in x.blocks) for x in a}) > 1


def test_sampling_stops_at_the_number_of_distinct_networks(micro):
    space = SearchSpace.load(str(micro["space"]))
    archs = sample_archs(space, 1000, seed=0)
    assert len(archs) == len({x.to_dict()["net_config"] for x in archs}) < 1000


def test_accuracy_figures_on_known_numbers():
    measured = [10.0, 20.0, 40.0, 80.0]
    predicted = [10.4, 18.0, 40.0, 96.0]  # +4%, -10%, 0%, +20%
    acc = accuracy(predicted, measured)
    assert acc.mape == pytest.approx((4 + 10 + 0 + 20) / 4)
    assert acc.within_5pct == pytest.approx(0.5)
    assert acc.within_10pct == pytest.approx(0.75)
    assert acc.spearman == pytest.approx(1.0)
    assert acc.max_abs_error_pct == pytest.approx(20.0)
    assert accuracy([3.0, 2.0, 1.0], [1.0, 2.0, 3.0]).spearman == pytest.approx(-1.0)


def test_calibration_fit_recovers_scale_and_offset_despite_an_outlier():
    sums = [1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0]
    overhead = 0.01
    measured = [1.2 * s + overhead + 0.3 for s in sums]
    measured[3] *= 1.5  # one network hit by a scheduler hiccup
    cal = fit_calibration(sums, measured, overhead)
    # plain least squares on these points gives scale 1.26; the Huber fit stays within 1%
    assert cal.scale == pytest.approx(1.2, rel=1e-2)
    assert cal.network_offset_ms == pytest.approx(0.3, abs=3e-2)
    assert cal.fitted_on == len(sums)
    offset_only = fit_calibration(sums, [s + overhead + 0.5 for s in sums], overhead, fit_scale=False)
    assert offset_only.scale == 1.0 and offset_only.network_offset_ms == pytest.approx(0.5, abs=1e-6)


def test_calibration_fit_recovers_a_per_layer_term():
    sums = [1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 4.0, 6.0, 9.0]
    layers = [12, 20, 15, 30, 18, 25, 22, 28, 14, 19]
    overhead = 0.01
    measured = [0.9 * s + 0.04 * n + overhead + 0.2 for s, n in zip(sums, layers)]
    measured[4] *= 1.4  # an outlier
    cal = fit_calibration(sums, measured, overhead, layers=layers)
    assert cal.scale == pytest.approx(0.9, rel=1e-2) and cal.per_layer_ms == pytest.approx(0.04, rel=5e-2)
    assert cal.network_offset_ms == pytest.approx(0.2, abs=5e-2)
    assert cal.network_ms(10.0, 20, overhead) == pytest.approx(0.9 * 10 + 0.04 * 20 + overhead + 0.2, rel=1e-2)
    assert fit_calibration(sums, measured, overhead).per_layer_ms == 0.0  # no layer counts, no such term
    # layer counts that explain nothing the scale does not: the term is left out
    noise = [-1, -1, 1, -1, -1, 1, -1, 1, 1, 1]  # ±2%, uncorrelated with the layer counts and the sums
    plain = [(1.1 * s + overhead + 0.2) * (1 + 0.02 * e) for s, e in zip(sums, noise)]
    assert fit_calibration(sums, plain, overhead, layers=layers).per_layer_ms == 0.0
    exact = [0.9 * s + 0.04 * n + overhead + 0.2 for s, n in zip(sums, layers)]
    assert cross_validated(sums, exact, overhead, seed=1, layers=layers) == pytest.approx(exact, rel=1e-6)


def test_cross_validated_predictions_come_from_the_other_half():
    sums = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    exact = [1.5 * s + 1.0 for s in sums]
    assert cross_validated(sums, exact, 0.0, seed=0) == pytest.approx(exact, rel=1e-6)
    # one corrupted measurement is never fitted to itself, so its CV prediction stays honest
    corrupted = list(exact)
    corrupted[2] = 100.0
    cv = cross_validated(sums, corrupted, 0.0, seed=0)
    assert cv[2] < 50.0


# -- bench ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch-cpu", "onnxruntime"])
def test_bench_json_beside_the_lut_prediction(micro, tmp_path, backend):
    space = SearchSpace.load(str(micro["space"]))
    arch = random_arch(space, random.Random(2))
    arch.save(tmp_path / "arch.json")
    r = _cli("bench", "--arch", str(tmp_path / "arch.json"), "--backend", backend, "--lut", str(micro[backend]),
             "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    for key in ("median_ms", "p90_ms", "p10_ms", "iqr_ms", "samples", "predicted_ms", "error_pct", "ratio"):
        assert key in d
    assert d["backend"] == backend and d["threads"] == 1  # taken from the LUT
    assert 0 < d["median_ms"] <= d["p90_ms"]
    predicted = arch_cost(arch, load_lut(micro[backend])).total
    assert d["predicted_ms"] == pytest.approx(predicted)
    assert d["error_pct"] == pytest.approx(100 * (predicted - d["median_ms"]) / d["median_ms"])


def test_bench_without_lut_reports_latency_only(micro):
    from densenas.bench import bench_arch

    arch = random_arch(SearchSpace.load(str(micro["space"])), random.Random(3))
    result = bench_arch(arch, "torch-cpu", threads=1, protocol=parse_protocol("fast"))
    d = result.to_dict()
    assert d["median_ms"] > 0 and d["threads"] == 1 and d["batch"] == 1
    assert "predicted_ms" not in d and "error_pct" not in d and result.error_pct is None


# -- validate -------------------------------------------------------------------------------


def test_validate_cli_reports_every_key_and_writes_a_png(micro, tmp_path):
    plot = tmp_path / "plots" / "scatter.png"
    before = micro["torch-cpu"].read_bytes()
    r = _cli("lut", "validate", str(micro["torch-cpu"]), "--space", str(micro["space"]), "--samples", "5",
             "--seed", "1", "--plot", str(plot), "--remeasure-ops", "--csv", str(tmp_path / "v.csv"), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    table = pd.read_csv(tmp_path / "v.csv")  # the same networks, one row each
    assert list(table["measured_ms"]) == pytest.approx([n["measured_ms"] for n in d["networks"]], rel=1e-12)
    assert list(table["net_config"]) == [n["net_config"] for n in d["networks"]]
    for key in ("samples", "mape", "within_5pct", "within_10pct", "spearman", "networks", "backend"):
        assert key in d
    assert d["samples"] == len(d["networks"]) == 5
    assert 0.0 <= d["within_5pct"] <= d["within_10pct"] <= 1.0
    assert -1.0 <= d["spearman"] <= 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert micro["torch-cpu"].read_bytes() == before  # no --calibrate: the LUT is untouched
    assert "before" not in d and "calibration" not in d
    # the drift-free check: the same networks against their ops timed alongside them
    assert d["interleaved"]["samples"] == 5 and "mape" in d["interleaved"]
    assert all(n["interleaved_predicted_ms"] > 0 and n["interleaved_measured_ms"] > 0 for n in d["networks"])


def test_calibrate_stores_the_fit_and_predictions_use_it(micro, tmp_path):
    lut = tmp_path / "lut.json"
    shutil.copy(micro["torch-cpu"], lut)
    out = tmp_path / "calibrated.json"
    result = validate_lut(str(lut), str(micro["space"]), samples=6, seed=0, calibrate=True, out=out, allow_busy=True)
    assert lut.read_bytes() == micro["torch-cpu"].read_bytes()  # --out leaves the input alone
    d = result.to_dict()
    assert {"before", "after", "calibration", "after_method"} <= set(d)
    assert d["before"]["samples"] == d["after"]["samples"] == 6
    if not result.calibration_stored:  # a fit no better than no fit is never stored
        assert result.after.mape >= result.before.mape and not out.exists()
        return

    table = LatencyTable.load(out)
    cal = table.calibration
    assert cal.fitted_on == 6 and cal.scale == pytest.approx(result.calibration.scale)
    assert cal.network_offset_ms == pytest.approx(result.calibration.network_offset_ms)
    assert table.meta["calibration_fit"]["samples"] == 6 and table.meta["calibration_fit"]["date"]
    plain = LatencyTable.load(micro["torch-cpu"])
    for arch in result.archs:
        raw = arch_cost(arch, plain)
        calibrated = arch_cost(arch, table).total
        expected = cal.scale * raw.sum_of_ops + cal.per_layer_ms * raw.layers + table.overhead_ms + cal.network_offset_ms
        assert calibrated == pytest.approx(expected)
        assert calibrated != pytest.approx(raw.total)


def test_calibrate_in_place_through_the_cli(micro, tmp_path):
    lut = tmp_path / "lut.json"
    shutil.copy(micro["torch-cpu"], lut)
    r = _cli("lut", "validate", str(lut), "--space", str(micro["space"]), "--samples", "4", "--calibrate", "--allow-busy", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    if not d["calibration_stored"]:  # a fit no better than no fit is never stored
        assert d["after"]["mape"] >= d["mape"]
        return
    assert d["calibrated_lut"] == str(lut)
    assert LatencyTable.load(lut).calibration.scale == pytest.approx(d["calibration"]["scale"])


def test_calibrate_needs_enough_samples(micro):
    with pytest.raises(DensenasError, match="--samples >= 4"):
        validate_lut(str(micro["torch-cpu"]), str(micro["space"]), samples=3, calibrate=True)


def test_validate_refuses_a_backend_that_cannot_run_here(micro, tmp_path):
    from densenas.profilers.tensorrt_backend import TensorRTProfiler

    if TensorRTProfiler.available()[0]:
        pytest.skip("TensorRT runs here; the refusal cannot be exercised")
    table = LatencyTable.load(micro["torch-cpu"])
    table.meta["backend"] = "tensorrt"
    table.save(tmp_path / "trt.json")
    r = _cli("lut", "validate", str(tmp_path / "trt.json"), "--space", str(micro["space"]), "--samples", "2")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: tensorrt:")
    assert "Traceback" not in r.stderr


def test_validate_refuses_a_lut_that_lacks_the_space(micro):
    with pytest.raises(DensenasError, match="16x16 inputs"):
        validate_lut(str(micro["torch-cpu"]), "mbv2-tiny", samples=2)


def test_networks_are_timed_with_the_thread_pool_spinning_the_lut_recorded(tmp_path):
    from densenas.bench import profiler_for_lut

    current = load_lut("mbv2-tiny/onnxruntime-cpu")
    assert current.meta["host"]["thread_pool_spinning"] is False
    assert profiler_for_lut(current).spinning is False
    # a LUT from before spinning was recorded was measured with ONNX Runtime's default (on)
    older = load_lut("mbv2-tiny/onnxruntime-cpu")
    del older.meta["host"]["thread_pool_spinning"]
    older.save(tmp_path / "older.json")
    assert profiler_for_lut(load_lut(tmp_path / "older.json")).spinning is True
