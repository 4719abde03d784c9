"""`densenas profile` and `densenas lut ...` as a user runs them: real subprocesses, real
backends on a 12-op space with a fast protocol (DENSENAS_PROFILE_PROTOCOL)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from densenas.lut.store import LatencyTable
from densenas.profilers import hostinfo
from tests.conftest import assert_user_error, run_cli
from tests.micro_space import MICRO, MICRO_OPS

FAST = {"DENSENAS_PROFILE_PROTOCOL": "fast"}
NEEDED = MICRO_OPS


@pytest.fixture
def micro(tmp_path: Path) -> Path:
    path = tmp_path / "micro.yaml"
    path.write_text(MICRO)
    return path


def _json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return json.loads(proc.stdout)


@pytest.mark.parametrize("backend", ["torch-cpu", "onnxruntime"])
def test_profile_writes_a_complete_lut_with_provenance(backend: str, micro: Path, tmp_path: Path) -> None:
    lut = tmp_path / f"{backend}.json"
    res = _json(run_cli("profile", "--space", str(micro), "--backend", backend, "--out", str(lut), "--json",
                        cwd=tmp_path, env=FAST))
    assert res["measured"] == NEEDED and res["complete"] and res["threads"] == hostinfo.usable_cpus()  # the default

    check = _json(run_cli("lut", "check", str(lut), "--space", str(micro), "--json"))
    assert check == {"lut": str(lut), "space": "micro", "complete": True, "needed": NEEDED, "missing": []}

    show = _json(run_cli("lut", "show", str(lut), "--json"))
    assert show["schema_version"] == "densenas.lut/1" and show["lut_version"] == 1
    assert show["backend"] == backend and show["rows"] == NEEDED and show["batch"] == 1
    for key in ("device", "backend_version", "threads", "precision", "input_size", "protocol", "timing_scope",
                "versions", "date", "host", "overhead_ms", "overhead", "calibration", "spaces"):
        assert show.get(key) not in (None, "", {}, []), key
    assert show["protocol"]["max_rounds"] == 3  # the fast preset was recorded
    assert show["overhead"]["median_ms"] == show["overhead_ms"] > 0

    # a second run reuses every row (same fingerprint) and says so
    again = run_cli("profile", "--space", str(micro), "--backend", backend, "--out", str(lut), "--json",
                    cwd=tmp_path, env=FAST)
    assert _json(again)["measured"] == 0 and "reusing its 12 rows" in again.stderr


def test_sigkill_then_resume_remeasures_nothing_finished(micro: Path, tmp_path: Path) -> None:
    lut = tmp_path / "killed.json"
    # slow enough per op (about 0.1 s) that the kill lands mid-run; two ops per chunk
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "DENSENAS_PROFILE_PROTOCOL": "warmup_s=0.02,min_sample_s=0.01,min_rounds=3,max_rounds=3,chunk_size=2"}
    proc = subprocess.Popen([sys.executable, "-m", "densenas", "profile", "--space", str(micro), "--backend",
                             "torch-cpu", "--out", str(lut)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    before: LatencyTable | None = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if lut.exists():
                t = LatencyTable.load(lut)  # atomic writes: never half a file
                if len(t.rows) >= 2:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    before = LatencyTable.load(lut)
    assert 2 <= len(before.rows) < NEEDED, "the kill should land after the first chunk and before the end"

    # a different fingerprint is refused, naming the difference (the default is the usable CPUs)
    cpus = hostinfo.usable_cpus()
    refused = run_cli("profile", "--space", str(micro), "--backend", "torch-cpu", "--out", str(lut), "--resume",
                      "--threads", str(cpus + 1), cwd=tmp_path, env=FAST)
    assert_user_error(refused, "--resume refused", f"threads is {cpus} in", f"but {cpus + 1} in this run")

    res = _json(run_cli("profile", "--space", str(micro), "--backend", "torch-cpu", "--out", str(lut), "--resume",
                        "--json", cwd=tmp_path, env=FAST))
    assert res["reused"] == len(before.rows) and res["measured"] == NEEDED - len(before.rows)
    after = LatencyTable.load(lut)
    assert len(after.rows) == NEEDED
    for key, row in before.rows.items():
        assert after.rows[key] == row  # same statistics and same measured_at: not re-measured
        assert row.measured_at
    assert _json(run_cli("lut", "check", str(lut), "--space", str(micro), "--json"))["complete"]


def test_shards_merge_into_the_whole(micro: Path, tmp_path: Path) -> None:
    from densenas.lut.profile import parse_protocol, profile_space

    parts = []
    for i in (1, 2):
        res = profile_space(str(micro), "torch-cpu", shard=(i, 2), out=tmp_path / f"s{i}.json",
                            protocol=parse_protocol("fast"))
        assert res.measured == NEEDED // 2 and res.table.meta["shard"] == f"{i}/2"
        parts.append(str(res.path))
    assert not set(LatencyTable.load(parts[0]).rows) & set(LatencyTable.load(parts[1]).rows)
    merged = tmp_path / "m.json"
    assert _json(run_cli("lut", "merge", *parts, "--out", str(merged), "--json"))["rows"] == NEEDED
    check = run_cli("lut", "check", parts[0], "--space", str(micro), "--json")
    assert check.returncode == 1 and len(json.loads(check.stdout)["missing"]) == NEEDED // 2
    assert _json(run_cli("lut", "check", str(merged), "--space", str(micro), "--json"))["complete"]
    d = _json(run_cli("lut", "diff", parts[0], str(merged), "--json"))
    assert d["summary"]["common"] == NEEDED // 2 and d["summary"]["median_ratio"] == 1.0
    assert len(d["only_in_b"]) == NEEDED // 2


@pytest.mark.parametrize("backend", ["torch-cuda", "tensorrt"])
def test_gpu_backend_without_a_gpu_is_one_line_exit_2(backend: str, micro: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible here")
    proc = run_cli("profile", "--space", str(micro), "--backend", backend, cwd=tmp_path)
    assert_user_error(proc, backend)
    assert not (tmp_path / "runs").exists()


def test_unknown_backend_lists_the_known_ones(micro: Path, tmp_path: Path) -> None:
    proc = run_cli("profile", "--space", str(micro), "--backend", "openvino-ish", cwd=tmp_path)
    assert_user_error(proc, "unknown profiler backend 'openvino-ish'", "torch-cpu", "onnxruntime")


def test_check_refuses_batch_mismatch_and_lists_missing(legacy_dir: Path, tmp_path: Path) -> None:
    lut = tmp_path / "resnet.json"
    imp = _json(run_cli("lut", "import-legacy", str(legacy_dir / "lat_list_resv2_32"), "--space", "resnet",
                        "--out", str(lut), "--json"))
    assert imp["rows"] == 125 and imp["missing"] == []  # the two classifiers the list never timed: 0 ms rows
    assert_user_error(run_cli("lut", "check", str(lut), "--space", "resnet", "--batch", "1"),
                      "measured at batch 32, you asked for batch 1")
    proc = run_cli("lut", "check", str(lut), "--space", "resnet")
    assert proc.returncode == 0 and "complete for resnet" in proc.stdout
    proc = run_cli("lut", "check", str(lut), "--space", "mbv2-tiny")
    assert proc.returncode == 1 and "stem_relu6|3|16|2|32x32|b32|fp32" in proc.stdout
    assert "densenas profile --space mbv2-tiny --backend torch-cuda --batch 32" in proc.stdout


def test_shipped_luts_are_listed_and_load(tmp_path: Path) -> None:
    listing = _json(run_cli("lut", "list", "--json"))["luts"]
    names = {e["name"] for e in listing}
    for name in ("mbv2/paper-titanxp@1", "resnet/paper-titanxp@1", "resnet/paper-titanxp-reg10@1"):
        assert name in names
    assert all("error" not in e for e in listing)
    show = _json(run_cli("lut", "show", "mbv2/paper-titanxp", "--json"))
    assert show["rows"] == 424 and show["batch"] == 32


def test_remeasure_noisy_redoes_only_the_noisy_rows(micro: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from densenas.lut.profile import parse_protocol, profile_space

    out = tmp_path / "noisy.json"
    first = profile_space(str(micro), "torch-cpu", out=out, protocol=parse_protocol("fast")).table
    assert all(r.host_busy is not None for r in first.rows.values())  # recorded per chunk
    keys = sorted(first.rows)
    for k in keys:  # a quiet host, a settled spread...
        first.rows[k] = replace(first.rows[k], host_busy=0.0, iqr_ms=0.0)
    spread, busy = keys[3], keys[7]  # ...except one wide spread and one busy host
    first.rows[spread] = replace(first.rows[spread], iqr_ms=first.rows[spread].median_ms, measured_at="spoilt")
    first.rows[busy] = replace(first.rows[busy], host_busy=1.5, measured_at="spoilt")
    first.save(out)
    res = profile_space(str(micro), "torch-cpu", out=out, protocol=parse_protocol("fast"), remeasure_above=0.5)
    assert (res.measured, res.remeasured, res.reused) == (2, 2, NEEDED - 2)
    after = LatencyTable.load(out)
    assert after.rows[spread].measured_at != "spoilt" and after.rows[busy].measured_at != "spoilt"
    assert all(after.rows[k] == first.rows[k] for k in keys if k not in (spread, busy))
