"""Per-layer diagnostics (densenas lut diagnose): node names read back to layers, and
real networks profiled layer by layer on ONNX Runtime and eager PyTorch. No assertion
depends on how fast this machine is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densenas.lut.diagnose import diagnose_lut, layer_paths
from densenas.lut.profile import parse_protocol, profile_space
from densenas.lut.refine import row_keys
from densenas.profilers import get_profiler_class
from densenas.profilers.errors import ProfilerError
from densenas.profilers.layers import (OTHER, REFORMAT, from_ort_trace, from_tensorrt_reports, fused_members,
                                       module_path, owner)
from densenas.profilers.tensorrt_backend import TensorRTProfiler
from densenas.space import SearchSpace
from densenas.lut.networks import sample_archs
from tests.conftest import assert_user_error, run_cli
from tests.test_bench_validate import MICRO_YAML as MICRO
from tests.trt_surface.strict_fake import surface_paths, use_fake


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("diagnose")
    space = root / "micro.yaml"
    space.write_text(MICRO)
    luts = {}
    for backend in ("onnxruntime", "torch-cpu"):
        luts[backend] = root / f"{backend}.json"
        profile_space(str(space), backend, out=luts[backend], protocol=parse_protocol("fast"))
    return {"space": space, **luts}


# -- node names to layers: pure ------------------------------------------------------------------


@pytest.mark.parametrize("name, path", [
    ("/blocks/blocks.0/head/expand/expand.0/Conv", "blocks.0.head.expand.0"),
    ("/stem/stem.0/stem.0.0/Conv", "stem.0.0"),  # a numbered child of a numbered child
    ("/classifier/fc/Gemm", "classifier.fc"),
    # ONNX Runtime names a fused, NCHWc-converted conv after the output of the activation it absorbed
    ("/blocks/blocks.1/stack/stack.0/depthwise/depthwise.2/Clip_output_0_nchwc", "blocks.1.stack.0.depthwise.2"),
    ("ReorderOutput", None),  # a node the runtime inserted: no scope
    ("/Flatten", None),
])
def test_exported_node_names_give_module_paths(name, path):
    assert module_path(name) == path


def test_a_path_belongs_to_the_deepest_layer_containing_it():
    layers = ["stem.0", "stem.1", "blocks.0.head", "blocks.0.stack.0", "blocks.10.head"]
    assert owner("blocks.0.head.op.0", layers) == "blocks.0.head"
    assert owner("blocks.0.stack.0", layers) == "blocks.0.stack.0"
    assert owner("blocks.1.head", layers) is None  # "blocks.10" is not a prefix of "blocks.1"
    assert owner(None, layers) is None


def test_a_trace_is_split_into_runs_and_warm_up_dropped():
    def run(ts, dur):
        return {"cat": "Session", "name": "model_run", "ts": ts, "dur": dur}

    def node(ts, name, dur, op="Conv"):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur, "args": {"op_name": op}}

    events = [run(0, 100), node(10, "/stem/stem.0/Conv", 90),  # warm-up run: slow, dropped
              run(200, 100), node(210, "/stem/stem.0/Conv", 30), node(250, "reorder_token_1", 5, "ReorderInput"),
              run(400, 100), node(410, "/stem/stem.0/Conv", 40), node(450, "reorder_token_1", 5, "ReorderInput")]
    t = from_ort_trace(events, ["stem.0"], skip_runs=1)
    assert t.runs == 2
    assert t.per_layer_ms["stem.0"] == pytest.approx(0.035)
    assert t.other_ms == pytest.approx(0.005) and t.other_parts == {"ReorderInput": pytest.approx(0.005)}
    assert t.total_ms == pytest.approx(0.040)


EXPAND = "/blocks/blocks.0/head/expand/expand.0/Conv"


@pytest.mark.parametrize("name, members", [
    (f"{EXPAND} + /blocks/blocks.0/head/expand/expand.2/Clip", [EXPAND, "/blocks/blocks.0/head/expand/expand.2/Clip"]),
    ("PWN(PWN(/blocks/blocks.1/stack/stack.0/Sigmoid), /blocks/blocks.1/stack/stack.0/Mul)",
     ["/blocks/blocks.1/stack/stack.0/Sigmoid", "/blocks/blocks.1/stack/stack.0/Mul"]),
    ("{ForeignNode[/stem/stem.0/stem.0.0/Conv.../classifier/fc/Gemm]}", ["/stem/stem.0/stem.0.0/Conv", "/classifier/fc/Gemm"]),
    ("/blocks/blocks.0/head/Add [profile 1]", ["/blocks/blocks.0/head/Add"]),
    (f"{REFORMAT} for Input Tensor 0 to {EXPAND} + /blocks/blocks.0/head/expand/expand.2/Clip", []),
    ("(Unnamed Layer* 12) [Shuffle]", []),
])
def test_tensorrt_layer_names_give_their_fused_onnx_nodes(name, members):
    assert fused_members(name) == members


def test_tensorrt_reports_credit_a_fused_layer_to_its_first_member_a_layer_owns():
    layers = ["stem.0", "blocks.0.head", "classifier"]
    fused = f"PWN(/Flatten_pre, {EXPAND}) + /blocks/blocks.1/head/Clip"  # the first member no layer owns
    reformat = f"{REFORMAT} for Input Tensor 0 to {EXPAND}"
    runs = [[("/stem/stem.0/stem.0.0/Conv", 0.25), (reformat, 0.125), (fused, 1.0), ("/classifier/fc/Gemm", 0.5)],
            [("/stem/stem.0/stem.0.0/Conv", 0.75), (reformat, 0.125), (fused, 2.0), ("/classifier/fc/Gemm", 0.5),
             ("/Flatten", 0.25)]]
    t = from_tensorrt_reports(runs, layers)
    assert t.runs == 2 and "IProfiler" in t.source
    assert t.per_layer_ms == {"stem.0": 0.5, "blocks.0.head": 1.5, "classifier": 0.5}
    assert t.other_parts == {REFORMAT: 0.125, "/Flatten": 0.125} and t.other_ms == pytest.approx(0.25)
    assert t.total_ms == pytest.approx(2.75)


# -- real networks ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["onnxruntime", "torch-cpu"])
def test_every_layer_of_a_real_network_gets_its_time(micro, backend):
    space = SearchSpace.load(str(micro["space"]))
    arch = sample_archs(space, 1, seed=3)[0]
    paths = layer_paths(arch)
    assert len(paths) == len(arch.layers()) == len(row_keys(arch, 1, "fp32"))
    from densenas.bench import input_shape, network_factory

    prof = get_profiler_class(backend)(threads=1, protocol=parse_protocol("fast"))
    t = prof.layer_times(network_factory(arch), input_shape(arch, 1), paths, runs=5)
    assert t.runs == 5 and set(t.per_layer_ms) == set(paths)
    assert all(ms > 0 for ms in t.per_layer_ms.values()), t.per_layer_ms
    # the layers own most of the network: were node names not read back, all would be "other"
    assert sum(t.per_layer_ms.values()) > t.other_ms
    assert t.total_ms == pytest.approx(sum(t.per_layer_ms.values()) + t.other_ms, rel=0.5)


@pytest.mark.parametrize("surface", surface_paths(), ids=lambda p: p.stem)
def test_tensorrt_reports_every_layer_of_a_real_network_on_a_strict_fake(surface, monkeypatch, tmp_path):
    _, knobs = use_fake(monkeypatch, surface)
    (tmp_path / "micro.yaml").write_text(MICRO)
    space = SearchSpace.load(str(tmp_path / "micro.yaml"))
    arch = sample_archs(space, 1, seed=3)[0]
    paths = layer_paths(arch)
    from densenas.bench import input_shape, network_factory

    prof = TensorRTProfiler(cache_dir=str(tmp_path), protocol=parse_protocol("fast"))
    t = prof.layer_times(network_factory(arch), input_shape(arch, 1), paths, runs=4)
    assert knobs.builds[-1]["profiling_verbosity"] == "LAYER_NAMES_ONLY"
    assert knobs.executions == 3 + 4  # warm-up, then the profiled runs
    assert t.runs == 4 and set(t.per_layer_ms) == set(paths) and "IProfiler" in t.source
    assert all(ms > 0 for ms in t.per_layer_ms.values()), t.per_layer_ms
    assert t.other_ms == 0 and t.total_ms == pytest.approx(sum(t.per_layer_ms.values()))


def test_diagnose_sets_each_row_beside_its_layers(micro):
    d = diagnose_lut(str(micro["onnxruntime"]), str(micro["space"]), networks=3, runs=5)
    assert d.networks == 3 and d.backend == "onnxruntime" and "session profiler" in d.source
    space = SearchSpace.load(str(micro["space"]))
    keys = {k for a in sample_archs(space, 3, seed=0) for k in row_keys(a, 1, "fp32")}
    assert {r.key for r in d.rows} == keys
    assert all(r.in_network_ms > 0 and r.profiled_ms > 0 and r.isolated_ms >= 0 for r in d.rows)
    assert d.measured_ms > 0 and d.profiled_ms > 0 and d.predicted_ms > 0
    # the layers' in-network times are the profiler's shares of the unprofiled time
    share = {r.key: r.in_network_ms / r.profiled_ms for r in d.rows}
    assert max(share.values()) < 50 * min(share.values())
    errors = [abs(r.error_per_network_ms) for r in d.rows]
    assert errors == sorted(errors, reverse=True)
    assert sum(v["in_network_ms"] for v in d.by_op.values()) == pytest.approx(
        sum(r.in_network_ms * r.occurrences for r in d.rows) / 3, rel=0.5)


def test_diagnose_through_the_cli(micro):
    proc = run_cli("lut", "diagnose", str(micro["torch-cpu"]), "--space", str(micro["space"]),
                   "--networks", "2", "--runs", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    d = json.loads(proc.stdout)
    assert d["backend"] == "torch-cpu" and d["networks"] == 2 and d["rows"]
    assert "forward" in d["source"] and OTHER not in {r["key"] for r in d["rows"]}
    human = run_cli("lut", "diagnose", str(micro["onnxruntime"]), "--space", str(micro["space"]),
                    "--networks", "1", "--runs", "3", "--top", "2")
    assert human.returncode == 0, human.stderr
    assert "rows that carry most of a network's error" in human.stdout


def test_diagnose_refuses_bad_input_in_one_line(micro, tmp_path):
    assert_user_error(run_cli("lut", "diagnose", str(micro["onnxruntime"]), "--space", "no-such-space"), "no-such-space")
    assert_user_error(run_cli("lut", "diagnose", str(tmp_path / "missing.json"), "--space", str(micro["space"])),
                      "missing.json")


def test_a_backend_without_a_layer_profiler_says_so():
    from densenas.profilers.base import Profiler

    class Plain(get_profiler_class("torch-cpu")):
        name = "plain"
        _layer_times = Profiler._layer_times

    with pytest.raises(ProfilerError, match="plain: this backend reports no per-layer times"):
        Plain().layer_times(lambda: __import__("torch").nn.Identity(), (1, 1, 2, 2), [], runs=1)
