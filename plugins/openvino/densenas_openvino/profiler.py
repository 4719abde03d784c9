"""The ``openvino`` backend: each op exported to ONNX with densenas's own loader (the
graph ``onnxruntime`` and ``tensorrt`` time too), compiled by ``openvino.Core`` for the
CPU with a fixed thread count, one stream and fp32 inference, and timed through an
infer request on a pre-set input."""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

from densenas.profilers import Prepared, Profiler, hostinfo
from densenas.profilers.onnx_loader import OnnxFromModule

if TYPE_CHECKING:
    import numpy as np
    import openvino as ov
    from torch import nn

DEVICE = "CPU"


@functools.cache
def _core() -> ov.Core:
    """One OpenVINO runtime per process: creating a Core loads its device plug-ins."""
    import openvino as ov

    return ov.Core()


class _InferRequestRun(Prepared):
    """``InferRequest.infer()`` on an input tensor set once; the outputs stay in the
    request's own tensors (``share_outputs``), so no copy is timed."""

    def __init__(self, compiled: ov.CompiledModel, x: np.ndarray) -> None:
        import openvino as ov

        self.compiled = compiled
        self.x = x  # the tensor below shares this array's memory
        self.request = compiled.create_infer_request()
        self.request.set_input_tensor(ov.Tensor(x))

    def run(self, n: int) -> float:
        infer = self.request.infer
        t0 = time.perf_counter_ns()
        for _ in range(n):
            infer(share_outputs=True)
        return (time.perf_counter_ns() - t0) * 1e-9

    def infer(self, x: np.ndarray) -> np.ndarray:
        # the compiled model's own request, so the timed request keeps its pre-set input
        return self.compiled([x])[0].astype("float32")

    def close(self) -> None:
        del self.request, self.compiled, self.x


class OpenVINOProfiler(Profiler):
    """OpenVINO's CPU plug-in, latency mode: ``threads`` inference threads (default
    the process's torch thread count, as the other CPU backends), one stream, fp32.

    fp32 is asked for explicitly: on CPUs with bf16 or AMX units OpenVINO would
    otherwise run in bf16, and the LUT would not be an fp32 one."""

    name = "openvino"
    device_kind = "cpu"
    precisions = ("fp32",)

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import openvino as ov
        except ImportError as exc:
            return False, f"{cls.name}: cannot import openvino ({exc}); pip install openvino"
        devices = _core().available_devices
        if DEVICE not in devices:
            return False, f"{cls.name}: OpenVINO {ov.__version__} has no CPU device here (devices: {devices})"
        return True, f"{cls.name}: OpenVINO {ov.__version__} on {hostinfo.cpu_model()}"

    @classmethod
    def backend_version(cls) -> str | None:
        return hostinfo.library_version("openvino")

    @property
    def timing_scope(self) -> str:
        return (
            "InferRequest.infer on the CPU plug-in with the input tensor set once and outputs left in the "
            "request's tensors, request overhead included; host wall clock (perf_counter_ns)"
        )

    def compile_config(self) -> dict[str, object]:
        """The properties every op is compiled with; recorded in the fingerprint."""
        return {
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": self.threads_in_effect(),
            "INFERENCE_PRECISION_HINT": "f32",
        }

    def _prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Prepared:
        core = _core()
        model = core.read_model(OnnxFromModule(module, input_shape)())
        compiled = core.compile_model(model, DEVICE, self.compile_config())
        return _InferRequestRun(compiled, self.example_input(input_shape).numpy())

    def _null_module(self) -> nn.Module:
        from torch import nn

        return nn.Identity()  # a lone ONNX Identity: the request's own cost and nothing else

    def _fingerprint_extra(self) -> dict[str, object]:
        core = _core()
        return {
            "openvino_device": DEVICE,
            "openvino_full_device_name": core.get_property(DEVICE, "FULL_DEVICE_NAME"),
            "openvino_cpu_pinning": bool(core.get_property(DEVICE, "ENABLE_CPU_PINNING")),
            "compile_config": self.compile_config(),
        }
