"""In-context op costs (densenas lut refine, profile --networks): the fit, the covering
sample, the store rules, and real refinements through the CLI, one of them while another
process keeps a core busy. No assertion depends on how fast this machine is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densenas.cost import arch_cost
from densenas.lut.profile import parse_protocol, profile_space
from densenas.lut.refine import (
    MIN_COVER,
    Design,
    covering_sample,
    design,
    fit_costs,
    network_rows,
    row_keys,
)
from densenas.lut.networks import refusal_reason
from densenas.lut.store import LatencyTable, is_shipped, resolve_lut
from densenas.space import SearchSpace
from tests.conftest import assert_user_error, run_cli
from tests.test_bench_validate import MICRO_YAML as MICRO  # 20 ops, 96 distinct networks


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> dict[str, Path]:
    """The micro space profiled on onnxruntime with the fast protocol, all usable threads
    (so one busy competitor leaves the measurement short of a CPU)."""
    root = tmp_path_factory.mktemp("refine")
    space = root / "micro.yaml"
    space.write_text(MICRO)
    lut = root / "onnxruntime.json"
    profile_space(str(space), "onnxruntime", out=lut, protocol=parse_protocol("fast"))
    return {"space": space, "lut": lut}


# -- the fit: pure ------------------------------------------------------------------------------


def test_fit_recovers_known_row_costs_from_network_totals_despite_an_outlier():
    rng = np.random.default_rng(0)
    rows, nets = 40, 120
    true = rng.uniform(0.02, 0.2, rows)
    isolated = true * rng.uniform(0.7, 1.4, rows)  # the isolated timing is off op by op
    counts = (rng.random((nets, rows)) < 0.2).astype(float)
    measured = counts @ true + 0.03
    measured[5] *= 1.6  # one network hit by a scheduler hiccup
    d = Design([f"r{i}" for i in range(rows)], counts, isolated, 0.03)
    fitted = fit_costs(d, measured, prior_strength=0.125)
    assert np.median(np.abs(fitted - true) / true) < 0.03
    assert np.median(np.abs(isolated - true) / true) > 0.1


def test_a_row_seen_in_few_networks_stays_near_its_isolated_cost():
    rng = np.random.default_rng(1)
    rows, nets = 20, 60
    true = rng.uniform(0.05, 0.1, rows)
    counts = (rng.random((nets, rows)) < 0.3).astype(float)
    counts[:, 0] = 0.0
    counts[0, 0] = 1.0  # row 0 appears once
    isolated = true.copy()
    isolated[0] = 0.5 * true[0]
    measured = counts @ true + 0.01
    d = Design([f"r{i}" for i in range(rows)], counts, isolated, 0.01)
    strong = fit_costs(d, measured, prior_strength=32.0)
    weak = fit_costs(d, measured, prior_strength=0.125)
    assert abs(strong[0] - isolated[0]) < abs(weak[0] - isolated[0])
    assert abs(strong[0] - isolated[0]) < 0.5 * abs(true[0] - isolated[0])


def test_a_row_no_network_has_takes_the_factor_networks_share():
    # networks run every op 1.3x slower than alone (say, a slower memory path in context):
    # the fit learns that from the networks and applies it to a row none of them has
    rng = np.random.default_rng(2)
    rows, nets = 30, 80
    isolated = rng.uniform(0.05, 0.1, rows)
    true = 1.3 * isolated
    counts = (rng.random((nets, rows)) < 0.3).astype(float)
    counts[:, -1] = 0.0  # the last row is in no network
    measured = counts @ true + 0.01
    d = Design([f"r{i}" for i in range(rows)], counts, isolated, 0.01)
    for strength in (0.5, 32.0):
        fitted = fit_costs(d, measured, prior_strength=strength)
        assert abs(fitted[-1] / isolated[-1] - 1.3) < 0.02, strength
        assert np.median(np.abs(fitted[:-1] - true[:-1]) / true[:-1]) < 0.01


def test_covering_sample_puts_every_row_in_several_networks_and_skips_excluded(tmp_path):
    path = tmp_path / "micro.yaml"
    path.write_text(MICRO)
    space = SearchSpace.load(str(path))
    first = covering_sample(space, 24, seed=0, batch=1, precision="fp32")
    keys = {n.to_dict()["net_config"] for n in first}
    assert len(keys) == 24
    seen: dict[str, int] = {}
    for arch in first:
        for k in set(row_keys(arch, 1, "fp32")):
            seen[k] = seen.get(k, 0) + 1
    assert set(seen) == network_rows(space, 1, "fp32")
    assert len(network_rows(space, 1, "fp32")) == len(space.unique_signatures()) - 3  # stacked skips drop out
    assert min(seen.values()) >= MIN_COVER
    again = covering_sample(space, 6, seed=0, batch=1, precision="fp32", exclude=keys)
    assert not keys & {n.to_dict()["net_config"] for n in again}


def test_refinement_predictions_come_from_the_latency_model(micro):
    """A refined LUT is predicted by the one latency model: in-context costs, the
    overhead once, no calibration; equal to the fit's own design matrix product."""
    table = LatencyTable.load(micro["lut"])
    space = SearchSpace.load(str(micro["space"]))
    archs = covering_sample(space, 5, seed=3, batch=1, precision="fp32")
    d = design(table, archs)
    costs = d.isolated * 1.3 + 0.001
    for key, c in zip(d.keys, costs):
        import dataclasses

        table.rows[key] = dataclasses.replace(table.rows[key], context_ms=float(c))
    table.calibration = {"scale": 2.0, "network_offset_ms": 5.0}
    table.refinement = {"method": "test", "networks": 5}
    assert [arch_cost(a, table).total for a in archs] == pytest.approx(list(d.predict(costs)))


def test_a_fit_is_stored_only_when_it_beats_the_lut_and_the_host_was_quiet():
    assert refusal_reason(3.0, 8.0, None, False) is None
    assert "no better" in refusal_reason(8.5, 8.0, None, False)
    assert "no better" in refusal_reason(8.0, 8.0, None, True)
    assert "busy" in refusal_reason(3.0, 8.0, 1.2, False)
    assert refusal_reason(3.0, 8.0, 1.2, True) is None


def test_shipped_luts_are_recognised_and_never_refined(cli, micro):
    assert is_shipped(resolve_lut("mbv2-tiny/onnxruntime-cpu"))
    assert not is_shipped(micro["lut"])
    proc = cli("lut", "refine", "mbv2-tiny/onnxruntime-cpu", "--space", "mbv2-tiny", "--networks", "8")
    assert_user_error(proc, "shipped LUT")
    proc = cli("lut", "validate", "mbv2-tiny/onnxruntime-cpu", "--space", "mbv2-tiny", "--samples", "4", "--calibrate")
    assert_user_error(proc, "shipped LUT")


# -- real refinements ----------------------------------------------------------------------------


def test_refine_through_the_cli_stores_context_costs_or_leaves_the_file(micro, tmp_path):
    out = tmp_path / "refined.json"
    proc = run_cli("lut", "refine", str(micro["lut"]), "--space", str(micro["space"]), "--networks", "8",
                   "--out", str(out), "--allow-busy", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    d = json.loads(proc.stdout)
    assert d["networks"] == 8 and d["held_out_networks"] == 4 and d["min_cover"] >= 1
    for name in ("isolated_sum", "as_is", "refined"):
        assert d["held_out"][name]["samples"] == 4
    assert d["noise_floor"]["samples"] == 4
    assert d["deployment"]["network_options"] == {"spinning": True, "spin_stop_after_run": True}
    assert d["deployment"]["op_timing_options"]["spinning"] is False
    if proc.returncode == 1:  # the fit lost on the held-out networks: nothing written
        assert "no better" in d["reason"] and not out.exists()
        return
    table = LatencyTable.load(out)
    assert all(r.context_ms is not None for r in table.rows.values())
    ref = table.refinement
    assert ref.networks == 8 and ref.held_out["mape"] == pytest.approx(d["held_out"]["refined"]["mape"])
    assert ref.held_out["noise_floor_mape"] == pytest.approx(d["noise_floor"]["mape"])
    assert ref.deployment.network_options["spinning"] is True and ref.deployment.backend == "onnxruntime"
    assert table.meta["refinement_fit"]["rows_fitted"] == d["rows_fitted"]


def test_profile_with_networks_records_the_deployment_and_refines(micro, tmp_path):
    out = tmp_path / "profiled.json"
    proc = run_cli("profile", "--space", str(micro["space"]), "--backend", "onnxruntime", "--protocol", "fast",
                   "--out", str(out), "--networks", "6", "--deployment", "spinning=off", "--allow-busy", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["deployment"]["network_options"] == {"spinning": False}
    assert d["refinement"]["networks"] == 6
    assert d["refinement"]["deployment"]["network_options"] == {"spinning": False}
    assert LatencyTable.load(out).meta["deployment"]["network_options"] == {"spinning": False}
    bad = run_cli("profile", "--space", str(micro["space"]), "--backend", "onnxruntime", "--out",
                  str(tmp_path / "x.json"), "--deployment", "spinnning=on")
    assert_user_error(bad, "--deployment", "spinnning")


@pytest.fixture
def busy_core():
    """Another process keeping one core busy for the length of a test."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield proc
    proc.kill()
    proc.wait()


def test_a_busy_host_cannot_store_a_calibration_or_a_refinement(micro, tmp_path, busy_core):
    lut = tmp_path / "lut.json"
    lut.write_bytes(micro["lut"].read_bytes())
    before = lut.read_bytes()
    proc = run_cli("lut", "validate", str(lut), "--space", str(micro["space"]), "--samples", "4",
                   "--calibrate", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["busy"] is True and d["host_busy_cpus"] >= 0.5
    assert d["calibration_stored"] is False and any("not stored" in n for n in d["notes"])
    assert lut.read_bytes() == before
    proc = run_cli("lut", "refine", str(lut), "--space", str(micro["space"]), "--networks", "6", "--json")
    assert proc.returncode == 1, proc.stderr
    d = json.loads(proc.stdout)
    assert d["busy"] is True and d["stored"] is False and "not stored" in d["reason"]
    assert lut.read_bytes() == before
