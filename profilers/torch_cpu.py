"""Eager PyTorch on the CPU."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from densenas.profilers import hostinfo
from densenas.profilers.base import Profiler
from densenas.profilers.protocol import Prepared

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from densenas.profilers.layers import LayerTimes


class EagerRunner(Prepared):
    """``module(x)`` in eager mode under ``torch.inference_mode``, timed on the host clock;
    ``infer`` runs on the module's device in the prepared input's dtype."""

    def __init__(self, module: nn.Module, x: torch.Tensor) -> None:
        self.module = module
        self.x = x

    def run(self, n: int) -> float:
        import torch

        module, x = self.module, self.x
        with torch.inference_mode():
            t0 = time.perf_counter_ns()
            for _ in range(n):
                module(x)
            return (time.perf_counter_ns() - t0) * 1e-9

    def infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.module(torch.as_tensor(x, device=self.x.device, dtype=self.x.dtype)).float().cpu().numpy()

    def close(self) -> None:
        del self.module, self.x


class TorchCPUProfiler(Profiler):
    """``module(x)`` in eager mode under ``torch.inference_mode`` with a fixed thread count.

    ``threads`` sets ``torch.set_num_threads`` while active and restores the previous
    count afterwards; without it the process's current count is used and recorded.
    """

    name = "torch-cpu"
    device_kind = "cpu"
    precisions = ("fp32",)

    _saved_threads: int | None = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - torch is a hard dependency
            return False, f"{cls.name}: torch cannot be imported ({exc}); pip install torch"
        return True, f"{cls.name}: torch {torch.__version__} on {hostinfo.cpu_model()}"

    @classmethod
    def backend_version(cls) -> str | None:
        return hostinfo.library_version("torch")

    @property
    def timing_scope(self) -> str:
        return (
            "eager forward of the module on a pre-made fp32 CPU input under torch.inference_mode, "
            "Python call overhead included; host wall clock (perf_counter_ns)"
        )

    def _activate(self) -> None:
        import torch

        if self.threads is not None:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def _deactivate(self) -> None:
        import torch

        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def _prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Prepared:
        import torch

        return EagerRunner(module.to("cpu", torch.float32), self.example_input(input_shape))

    def _layer_times(self, module: nn.Module, input_shape: tuple[int, ...], layers: list[str], runs: int,
                     warmup: int) -> LayerTimes:
        import torch

        from densenas.profilers.layers import from_forward_hooks

        module = module.to("cpu", torch.float32)
        return from_forward_hooks(module, self.example_input(input_shape), layers, runs=runs, warmup=warmup)

    def _fingerprint_extra(self) -> dict[str, object]:
        import torch

        return {
            "interop_threads": torch.get_num_interop_threads(),
            "mkldnn": torch.backends.mkldnn.is_available(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        }
