"""The backends measured for real: torch-cpu and onnxruntime here, the GPU ones where a GPU is."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from densenas.profilers import Measurement, Profiler, ProfilerError, ProfilerUnavailable, Protocol
from densenas.profilers.ort import OnnxRuntimeProfiler
from densenas.profilers.tensorrt_backend import TensorRTProfiler
from densenas.profilers.torch_cpu import TorchCPUProfiler
from densenas.profilers.torch_cuda import TorchCUDAProfiler

FAST = Protocol(warmup_s=0.01, min_sample_s=0.0002, max_rounds=4, max_s_per_op=0.2)
SHAPE = (1, 16, 32, 32)
HOST_BACKENDS = [TorchCPUProfiler, OnnxRuntimeProfiler]
GPU = torch.cuda.is_available()


def conv_bn_relu() -> nn.Module:
    return nn.Sequential(nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())


def check_sane(m: Measurement, protocol: Protocol) -> None:
    assert m.median_ms > 0
    assert m.min_ms <= m.p10_ms <= m.median_ms <= m.p90_ms
    assert m.iqr_ms >= 0
    assert m.samples >= protocol.min_rounds * protocol.samples_per_round or m.rounds >= 1
    assert m.samples == m.rounds * protocol.samples_per_round


@pytest.mark.parametrize("cls", HOST_BACKENDS)
def test_host_backends_are_available_here(cls: type[Profiler]) -> None:
    ok, reason = cls.available()
    assert ok, reason
    assert reason.startswith(cls.name)


@pytest.mark.skipif(GPU, reason="a GPU is visible")
@pytest.mark.parametrize("cls", [TorchCUDAProfiler, TensorRTProfiler])
def test_gpu_backends_say_why_not_in_one_line(cls: type[Profiler]) -> None:
    ok, reason = cls.available()
    assert not ok
    assert reason.startswith(f"{cls.name}: ") and "\n" not in reason
    assert "GPU" in reason  # the fix names the hardware needed
    with pytest.raises(ProfilerUnavailable, match=f"^{cls.name}: ") as info:
        cls(protocol=FAST).measure(conv_bn_relu(), SHAPE)
    assert str(info.value) == reason
    with pytest.raises(ProfilerUnavailable), cls():
        pass


@pytest.mark.parametrize("cls", HOST_BACKENDS)
def test_measuring_a_conv_gives_sane_statistics(cls: type[Profiler]) -> None:
    with cls(protocol=FAST) as profiler:
        m = profiler.measure(conv_bn_relu(), SHAPE)
    check_sane(m, FAST)


@pytest.mark.parametrize("cls", HOST_BACKENDS)
def test_overhead_is_positive_and_below_a_real_op(cls: type[Profiler]) -> None:
    with cls(protocol=FAST) as profiler:
        overhead = profiler.overhead()
        conv = profiler.measure(conv_bn_relu(), SHAPE)
    assert 0 < overhead.median_ms < conv.median_ms


@pytest.mark.parametrize("cls", HOST_BACKENDS)
def test_the_runner_that_is_timed_infers_what_the_module_computes(cls: type[Profiler]) -> None:
    module = conv_bn_relu().eval()
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5))  # not the runner's own input
    with cls(protocol=FAST) as profiler, profiler.runner(module, SHAPE) as runner:
        got = runner.infer(x.numpy())
        assert runner.run(2) > 0
    with torch.no_grad():
        want = module(x).numpy()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_measure_leaves_the_callers_module_untouched() -> None:
    module = conv_bn_relu().train()
    TorchCPUProfiler(protocol=FAST).measure(module, SHAPE)
    assert module.training


@pytest.mark.parametrize("cls", HOST_BACKENDS)
def test_fingerprint_records_what_changes_the_numbers(cls: type[Profiler]) -> None:
    fp = cls(threads=1, protocol=FAST).fingerprint()
    assert fp["backend"] == cls.name
    assert fp["backend_version"]
    assert fp["threads"] == 1
    assert fp["precision"] == "fp32"
    assert fp["device"] and fp["device_kind"] == "cpu"
    assert fp["protocol"] == FAST.to_dict()
    assert isinstance(fp["timing_scope"], str) and fp["timing_scope"]
    versions = fp["versions"]
    assert isinstance(versions, dict)
    assert {"python", "torch", "onnx", "onnxruntime"} <= set(versions)
    assert isinstance(fp["cpu_count"], int) and fp["os"]


def test_onnxruntime_fingerprint_names_provider_and_threads() -> None:
    fp = OnnxRuntimeProfiler(threads=2).fingerprint()
    assert fp["provider"] == "CPUExecutionProvider" or GPU
    assert fp["intra_op_threads"] == 2 and fp["inter_op_threads"] == 1


def test_onnxruntime_sessions_do_not_spin_between_runs() -> None:
    # interleaved sessions that spin steal the cores from the one being timed
    with OnnxRuntimeProfiler(threads=2, protocol=FAST) as profiler:
        prepared = profiler._prepare(nn.Conv2d(8, 8, 3, padding=1), (1, 8, 16, 16))
        options = prepared.session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert options.get_session_config_entry("session.inter_op.allow_spinning") == "0"
        assert profiler.fingerprint()["thread_pool_spinning"] is False
        prepared.close()


def test_torch_cpu_threads_are_set_while_active_and_restored() -> None:
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    with TorchCPUProfiler(threads=wanted, protocol=FAST) as profiler:
        assert torch.get_num_threads() == wanted
        assert profiler.fingerprint()["threads"] == wanted
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("cls", [TorchCPUProfiler, OnnxRuntimeProfiler])
def test_fp16_on_a_cpu_backend_is_refused_naming_precision(cls: type[Profiler]) -> None:
    if cls is OnnxRuntimeProfiler and GPU:
        pytest.skip("a GPU provider may take fp16")
    with pytest.raises(ProfilerError, match="precision 'fp16'"):
        cls(precision="fp16")


def test_bad_constructor_arguments_name_the_field() -> None:
    with pytest.raises(ProfilerError, match="precision"):
        TorchCPUProfiler(precision="int8")
    with pytest.raises(ProfilerError, match="threads"):
        TorchCPUProfiler(threads=0)
    with pytest.raises(ProfilerError, match="device_index"):
        TorchCPUProfiler(device_index=-1)


def test_onnxruntime_unknown_provider_is_refused() -> None:
    with pytest.raises(ProfilerError, match="NoSuchExecutionProvider"):
        OnnxRuntimeProfiler(providers=["NoSuchExecutionProvider"])


def test_torch_cpu_and_onnxruntime_see_the_same_input() -> None:
    a = TorchCPUProfiler().example_input(SHAPE)
    b = OnnxRuntimeProfiler().example_input(SHAPE)
    assert torch.equal(a, b)


@pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_cuda_measures_a_conv(precision: str) -> None:
    with TorchCUDAProfiler(precision=precision, protocol=FAST) as profiler:
        assert torch.backends.cudnn.benchmark
        conv = profiler.measure(conv_bn_relu(), SHAPE)
        overhead = profiler.overhead()
        fp = profiler.fingerprint()
    check_sane(conv, FAST)
    assert overhead.median_ms > 0
    assert fp["gpu"] and fp["compute_capability"] and fp["precision"] == precision
    x = torch.randn(SHAPE)
    with TorchCUDAProfiler(precision=precision).runner(conv_bn_relu(), SHAPE) as runner:
        got = runner.infer(x.numpy())
    assert got.dtype == np.float32 and got.shape == (1, 32, 32, 32)


@pytest.mark.skipif(not TensorRTProfiler.available()[0], reason="needs TensorRT and a CUDA GPU")
def test_tensorrt_measures_a_conv(tmp_path: object) -> None:
    with TensorRTProfiler(protocol=FAST, cache_dir=str(tmp_path)) as profiler:
        first = profiler.measure(conv_bn_relu(), SHAPE)
        engines = list(profiler.engine_cache().folder.glob("*.engine"))
        again = profiler.measure(conv_bn_relu(), SHAPE)  # served from the engine cache
    check_sane(first, FAST)
    check_sane(again, FAST)
    assert len(engines) == 1 and profiler.engine_cache().timing_cache_path.is_file()
