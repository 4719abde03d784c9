"""Eager PyTorch on an NVIDIA GPU, timed with CUDA events."""

from __future__ import annotations

from typing import TYPE_CHECKING

from densenas.profilers import hostinfo
from densenas.profilers.base import Profiler
from densenas.profilers.errors import ProfilerError
from densenas.profilers.protocol import Prepared
from densenas.profilers.torch_cpu import EagerRunner

if TYPE_CHECKING:
    import torch
    from torch import nn

FALLBACK_HINT = "run on a machine with an NVIDIA GPU or use --backend torch-cpu"


class _EagerCUDA(EagerRunner):
    """``n`` forward calls between two CUDA events on the current stream.

    When the GPU outruns the host (tiny ops), the events measure launch throughput,
    which is what such an op costs in an eager network too.
    """

    def __init__(self, module: nn.Module, x: torch.Tensor) -> None:
        import torch

        super().__init__(module, x)
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def run(self, n: int) -> float:
        import torch

        module, x = self.module, self.x
        with torch.inference_mode():
            self.start.record()
            for _ in range(n):
                module(x)
            self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end) * 1e-3


class TorchCUDAProfiler(Profiler):
    """Eager forward on ``cuda:<device_index>``; fp16 runs a half copy on a half input.

    ``torch.backends.cudnn.benchmark`` is on while active, so the warm-up autotunes each
    convolution and the timed calls use the chosen algorithm.
    """

    name = "torch-cuda"
    device_kind = "cuda"
    precisions = ("fp32", "fp16")

    _saved_flags: tuple[bool, int | None] | None = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            reason = hostinfo.cuda_unavailable_reason()
        except ImportError as exc:  # pragma: no cover - torch is a hard dependency
            return False, f"{cls.name}: torch cannot be imported ({exc}); pip install torch"
        if reason is not None:
            return False, f"{cls.name}: {reason}; {FALLBACK_HINT}"
        import torch

        gpu = torch.cuda.get_device_name(0)
        return True, f"{cls.name}: torch {torch.__version__}, CUDA {torch.version.cuda}, {gpu}"

    @classmethod
    def backend_version(cls) -> str | None:
        return hostinfo.library_version("torch")

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device("cuda", self.device_index)

    @property
    def timing_scope(self) -> str:
        return (
            "eager forward on a pre-made device input between CUDA events on the current stream, "
            "kernel launch overhead included; no host-device copies; no CUDA graph"
        )

    def device_name(self) -> str:
        import torch

        return torch.cuda.get_device_name(self.device_index)

    def _activate(self) -> None:
        import torch

        count = torch.cuda.device_count()
        if self.device_index >= count:
            raise ProfilerError(
                f"{self.name}: device_index {self.device_index} is out of range ({count} GPU(s) visible)"
            )
        self._saved_flags = (torch.backends.cudnn.benchmark, torch.cuda.current_device())
        torch.backends.cudnn.benchmark = True
        torch.cuda.set_device(self.device_index)

    def _deactivate(self) -> None:
        import torch

        if self._saved_flags is not None:
            benchmark, device = self._saved_flags
            torch.backends.cudnn.benchmark = benchmark
            if device is not None:
                torch.cuda.set_device(device)
            self._saved_flags = None

    def _prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Prepared:
        import torch

        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        module = module.to(device=self.device, dtype=dtype)
        x = self.example_input(input_shape).to(device=self.device, dtype=dtype)
        return _EagerCUDA(module, x)

    def _fingerprint_extra(self) -> dict[str, object]:
        import torch

        facts: dict[str, object] = {
            "cudnn_benchmark": True,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        }
        facts.update(hostinfo.cuda_device_facts(self.device_index))
        return facts
