"""The TensorRT backend against strict fakes of the real TensorRT 10 and 11 bindings
(``tests/trt_surface``): every name it uses exists in both, every call fits the real
signatures, and building, the runner's setup and profiling work for fp32, fp16 and a
dynamic batch, with GPU memory replaced by host memory."""

from __future__ import annotations

import fcntl
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from densenas.profilers import ProfilerError, Protocol
from densenas.profilers import tensorrt_backend as backend
from densenas.profilers.onnx_loader import OnnxFromModule
from tests.trt_surface.strict_fake import HostCuda, surface_paths, use_fake

SURFACES = surface_paths()
FAST = Protocol(warmup_s=0.005, min_sample_s=0.0002, max_rounds=3, max_s_per_op=0.1)
SHAPE = (1, 4, 8, 8)


def conv() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6()).eval()


@pytest.fixture(params=SURFACES, ids=[p.stem for p in SURFACES])
def fake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    return use_fake(monkeypatch, request.param)


def test_both_majors_are_covered() -> None:
    majors = {p.stem.split("-")[1].split(".")[0] for p in SURFACES}
    assert {"10", "11"} <= majors


def test_the_fake_refuses_what_the_real_version_lacks(fake) -> None:
    trt, _ = fake
    major = int(trt.__version__.split(".")[0])
    assert hasattr(trt.BuilderFlag, "FP16") == (major == 10)  # removed in 11.0
    assert hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    with pytest.raises(AttributeError):
        builder.no_such_method  # noqa: B018
    config = builder.create_builder_config()
    with pytest.raises(TypeError):
        config.set_flag()
    with pytest.raises(TypeError):
        config.set_flag(1)  # an int is not a BuilderFlag
    with pytest.raises(AttributeError):
        config.no_such_property = 1


@pytest.mark.parametrize("tf32", [False, True])
def test_fp32_build_is_strongly_typed_and_tf32_is_what_was_asked(fake, tf32: bool) -> None:
    _, knobs = fake
    onnx = OnnxFromModule(conv(), SHAPE)()
    settings = backend.BuildSettings(tf32=tf32, workspace_bytes=1 << 20, optimization_level=2)
    engine = backend.build_serialized_engine(onnx, settings=settings)
    built = knobs.builds[-1]
    assert isinstance(engine, bytes) and built["strongly_typed"]
    assert ("TF32" in built["flags"]) == tf32
    assert built["workspace"] == 1 << 20 and built["optimization_level"] == 2
    assert [t["dtype"] for t in built["inputs"]] == ["FLOAT"]


def test_fp16_comes_from_an_fp16_onnx_with_fp16_io(fake) -> None:
    _, knobs = fake
    onnx = OnnxFromModule(conv(), SHAPE, precision="fp16")()
    engine = backend.build_serialized_engine(onnx, settings=backend.BuildSettings("fp16"))
    built = knobs.builds[-1]
    assert built["strongly_typed"] and not {"FP16", "INT8", "BF16"} & set(built["flags"])
    assert [t["dtype"] for t in built["inputs"] + built["outputs"]] == ["HALF", "HALF"]
    x = torch.randn(SHAPE)
    with backend.EngineRunner(engine, torch.zeros(SHAPE)) as runner:
        assert runner.buffers["input"].dtype == torch.float16
        assert runner.run(2) > 0
        got = runner.infer(x.numpy())
        with pytest.raises(ProfilerError, match=r"input 'input' is \(1, 4, 8, 8\), got \(2, 4, 8, 8\)"):
            runner.infer(np.zeros((2, 4, 8, 8), np.float32))
    want = conv()(x).detach().numpy()
    assert got.dtype == np.float32 and np.abs(got - want).max() < 2e-2


def test_fp16_settings_refuse_an_fp32_onnx(fake) -> None:
    onnx = OnnxFromModule(conv(), SHAPE)()
    with pytest.raises(ProfilerError, match="input 'input' is FLOAT, precision fp16 needs HALF"):
        backend.build_serialized_engine(onnx, settings=backend.BuildSettings("fp16"))


def test_dynamic_batch_engine_runs_inside_its_profile_and_refuses_outside(fake) -> None:
    onnx = OnnxFromModule(conv(), (2, 4, 8, 8), dynamic_batch=True)()
    shapes = {"input": ((1, 4, 8, 8), (2, 4, 8, 8), (6, 4, 8, 8))}
    engine = backend.build_serialized_engine(onnx, input_shapes=shapes)
    for batch in (1, 6):
        x = torch.randn(batch, 4, 8, 8)
        with backend.EngineRunner(engine, x) as runner:
            got = runner.infer(x.numpy())
        assert got.shape == (batch, 8, 8, 8)
        assert np.abs(got - conv()(x).detach().numpy()).max() < 1e-4
    with pytest.raises(ProfilerError, match=r"outside the engine's profile .*min \(1, 4, 8, 8\), max \(6, 4, 8, 8\)"):
        backend.EngineRunner(engine, torch.randn(7, 4, 8, 8))
    with pytest.raises(ProfilerError, match="dynamic shape"):
        backend.build_serialized_engine(onnx)
    with pytest.raises(ProfilerError, match="profile .* rejected"):
        backend.build_serialized_engine(onnx, input_shapes={"input": ((3, 4, 8, 8), (2, 4, 8, 8), (6, 4, 8, 8))})


def test_timing_cache_is_merged_across_builds(fake, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    backend.build_serialized_engine(OnnxFromModule(conv(), SHAPE)(), timing_cache_path=cache)
    first = cache.read_bytes()
    backend.build_serialized_engine(OnnxFromModule(conv(), (2, 4, 8, 8))(), timing_cache_path=cache)
    assert len(cache.read_bytes()) > len(first)  # the second build's entries joined the first's
    cache.write_bytes(b"garbage")  # a damaged cache is only a lost speed-up
    backend.build_serialized_engine(OnnxFromModule(conv(), SHAPE)(), timing_cache_path=cache)
    assert cache.read_bytes() != b"garbage"


def test_timing_cache_lock_is_exclusive(tmp_path: Path) -> None:
    path = tmp_path / "timing.cache"
    with backend.file_lock(path), open(str(path) + ".lock", "a+b") as other:
        with pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(str(path) + ".lock", "a+b") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on leaving


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_profiler_measures_and_reuses_its_engine_cache(fake, tmp_path: Path, precision: str) -> None:
    _, knobs = fake
    assert backend.TensorRTProfiler.available()[0]
    with backend.TensorRTProfiler(precision=precision, protocol=FAST, cache_dir=str(tmp_path)) as profiler:
        m = profiler.measure(conv(), SHAPE)
        facts = profiler.fingerprint()
    assert m.median_ms > 0 and m.samples > 0
    assert facts["tf32"] is False and facts["builder_flags"] == [] and facts["io_dtype"] == precision
    assert facts["network_flags"] == ["STRONGLY_TYPED"] and facts["optimization_level"] == 3
    builds = len(knobs.builds)
    with backend.TensorRTProfiler(precision=precision, protocol=FAST, cache_dir=str(tmp_path)) as again:
        again.measure(conv(), SHAPE)
    assert len(knobs.builds) == builds  # every engine came from the cache
    with backend.TensorRTProfiler(precision=precision, protocol=FAST, cache_dir=str(tmp_path), tf32=True) as tf32:
        tf32.measure(conv(), SHAPE)
    assert len(knobs.builds) > builds and "TF32" in knobs.builds[-1]["flags"]  # another setting, another engine


def test_available_creates_a_builder_and_names_the_fix(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    _, knobs = fake
    knobs.builder_error = "pybind11::init(): factory function returned nullptr"
    ok, reason = backend.TensorRTProfiler.available()
    assert not ok and "\n" not in reason
    assert reason.startswith("tensorrt: TensorRT ") and "cannot create a builder" in reason and "driver" in reason


def test_available_checks_the_gpu_generation(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "CUDA", HostCuda(capability_=(7, 0), name_="Tesla V100"))
    ok, reason = backend.TensorRTProfiler.available()
    assert not ok and "Tesla V100 has compute capability 7.0" in reason and "7.5 or newer" in reason
