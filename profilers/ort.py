"""ONNX Runtime: the op is exported to ONNX (through ``onnx_loader``) and run in an
InferenceSession with full graph optimisation and fixed threads."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from densenas.profilers import hostinfo
from densenas.profilers.base import Profiler
from densenas.profilers.errors import ProfilerError
from densenas.profilers.onnx_loader import INPUT_NAME, OnnxFromModule
from densenas.profilers.protocol import Prepared, Protocol

if TYPE_CHECKING:
    import numpy as np
    import onnxruntime as ort
    from torch import nn

    from densenas.profilers.layers import LayerTimes

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)
SPIN_ENTRIES = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")


def _gpu_visible() -> bool:
    try:
        return hostinfo.cuda_unavailable_reason() is None
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False


def default_provider() -> str:
    """The CUDA provider where this onnxruntime build has it and a GPU is visible, else CPU.

    The TensorRT provider is used only when asked for by name: it needs TensorRT's
    libraries at session creation, and the ``tensorrt`` backend covers that case directly.
    """
    import onnxruntime as ort

    if CUDA in ort.get_available_providers() and _gpu_visible():
        return CUDA
    return CPU


def _input_dtype(session: ort.InferenceSession) -> str:
    return "float16" if session.get_inputs()[0].type == "tensor(float16)" else "float32"


def check_session_providers(requested: str, got: Sequence[str]) -> list[str]:
    """``got`` (``session.get_providers()``), refused unless it starts with ``requested``."""
    if not got or got[0] != requested:
        fix = ("install onnxruntime-gpu for this CUDA (pip install 'densenas[onnxruntime-gpu]', see the README) "
               "or ask for providers=['CPUExecutionProvider']")
        raise ProfilerError(
            f"onnxruntime: asked for {requested} but the session runs on {', '.join(got) or 'nothing'} "
            f"(ONNX Runtime fell back silently); {fix}"
        )
    return list(got)


class _SessionRun(Prepared):
    """``session.run`` on a pre-made numpy input; the output comes back as a new array."""

    def __init__(self, session: ort.InferenceSession, x: np.ndarray) -> None:
        self.session = session
        self.feed = {INPUT_NAME: x}

    def run(self, n: int) -> float:
        run, feed = self.session.run, self.feed
        t0 = time.perf_counter_ns()
        for _ in range(n):
            run(None, feed)
        return (time.perf_counter_ns() - t0) * 1e-9

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {INPUT_NAME: x.astype(self.feed[INPUT_NAME].dtype)})[0].astype("float32")

    def close(self) -> None:
        del self.session, self.feed


class _BoundRun(_SessionRun):
    """``run_with_iobinding`` with input and output bound on the GPU: no host copies.
    ORT synchronises the device at the end of each run, so the host clock is exact.
    ``infer`` goes through ``session.run``, which copies to and from the device."""

    def __init__(self, session: ort.InferenceSession, x: np.ndarray, device_index: int) -> None:
        import onnxruntime as ort

        super().__init__(session, x)
        self.binding = session.io_binding()
        self.x = ort.OrtValue.ortvalue_from_numpy(x, "cuda", device_index)
        self.binding.bind_ortvalue_input(INPUT_NAME, self.x)
        for output in session.get_outputs():
            self.binding.bind_output(output.name, "cuda", device_index)
        self.binding.synchronize_inputs()

    def run(self, n: int) -> float:
        run, binding = self.session.run_with_iobinding, self.binding
        t0 = time.perf_counter_ns()
        for _ in range(n):
            run(binding)
        return (time.perf_counter_ns() - t0) * 1e-9

    def close(self) -> None:
        del self.binding, self.x
        super().close()


class OnnxRuntimeProfiler(Profiler):
    """ONNX Runtime with ``ORT_ENABLE_ALL``, sequential execution, one inter-op thread and
    a fixed intra-op thread count (``threads``, default torch's current count).

    ``spinning`` lets idle pool threads spin for work (ONNX Runtime's own default). Off
    by default: the protocol interleaves many sessions, and a spinning pool of one
    steals cores from the next. ``spin_stop_after_run`` lets a pool spin during a run and
    stops it when the run returns (``session.force_spinning_stop``): whole networks are
    timed that way (``deployment_options``), as a deployed session runs them, without the
    interleaved sessions taking each other's cores.

    ``providers`` picks the execution provider chain (e.g. ``["TensorrtExecutionProvider",
    "CUDAExecutionProvider"]``); by default CUDA when available, else CPU. fp16 needs a
    GPU provider.
    """

    name = "onnxruntime"
    device_kind = "cpu"  # per instance: "cuda" when a GPU provider is chosen
    precisions = ("fp32", "fp16")

    def __init__(
        self,
        *,
        threads: int | None = None,
        precision: str = "fp32",
        device_index: int = 0,
        cache_dir: str | None = None,
        protocol: Protocol | None = None,
        providers: Sequence[str] | None = None,
        spinning: bool = False,
        spin_stop_after_run: bool = False,
    ) -> None:
        super().__init__(
            threads=threads,
            precision=precision,
            device_index=device_index,
            cache_dir=cache_dir,
            protocol=protocol,
        )
        if providers is not None and (isinstance(providers, str) or not providers):
            raise ProfilerError(f"{self.name}: providers must be a non-empty list of provider names, got {providers!r}")
        self._requested_providers = list(providers) if providers is not None else None
        self.spinning = bool(spinning)
        self.spin_stop_after_run = bool(spin_stop_after_run)
        self._providers: list[str] | None = None
        if self.available()[0]:
            self._providers = self._resolve_providers()
            self._check_precision()

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            import onnx  # noqa: F401
            import onnxruntime as ort
        except ImportError as exc:
            return False, f"{cls.name}: cannot import onnx/onnxruntime ({exc}); pip install onnx onnxruntime"
        return True, f"{cls.name}: onnxruntime {ort.__version__}, providers {', '.join(ort.get_available_providers())}"

    @classmethod
    def backend_version(cls) -> str | None:
        return hostinfo.library_version("onnxruntime")

    @property
    def provider(self) -> str:
        """The execution provider the session runs on (the first of the chain)."""
        return self._chain()[0]

    def _chain(self) -> list[str]:
        if self._providers is None:
            self.check_available()
            self._providers = self._resolve_providers()
        return self._providers

    def _resolve_providers(self) -> list[str]:
        import onnxruntime as ort

        if self._requested_providers is None:
            first = default_provider()
            return [first, CPU] if first != CPU else [CPU]
        known = ort.get_available_providers()
        missing = [p for p in self._requested_providers if p not in known]
        if missing:
            raise ProfilerError(
                f"{self.name}: providers {', '.join(missing)} not in this onnxruntime build "
                f"(available: {', '.join(known)})"
            )
        return list(self._requested_providers)

    def _check_precision(self) -> None:
        if self.precision == "fp16" and self.provider not in GPU_PROVIDERS:
            raise ProfilerError(
                f"{self.name}: precision 'fp16' is not supported on {self.provider}; "
                "use precision 'fp32', or a GPU provider (CUDAExecutionProvider, TensorrtExecutionProvider)"
            )

    @property
    def on_gpu(self) -> bool:
        return self.provider in GPU_PROVIDERS

    @property
    def timing_scope(self) -> str:
        if self.on_gpu:
            return (
                f"InferenceSession.run_with_iobinding on {self.provider} with input and output bound on the GPU, "
                "no host-device copies, session overhead included; host wall clock (ORT synchronises each run)"
            )
        return (
            f"InferenceSession.run on {self.provider} with a pre-made numpy input, the output returned as a "
            "new numpy array, session overhead included, thread-pool spinning "
            f"{'on' if self.spinning else 'off'}{', stopped after each run' if self.spinning and self.spin_stop_after_run else ''}; "
            "host wall clock (perf_counter_ns)"
        )

    def device_name(self) -> str:
        if self.on_gpu:
            import torch

            return torch.cuda.get_device_name(self.device_index)
        return hostinfo.cpu_model()

    def _activate(self) -> None:
        self._chain()
        self._check_precision()

    @classmethod
    def options_from_fingerprint(cls, facts: Mapping[str, object]) -> dict[str, object]:
        # fingerprints from before spinning was recorded were taken with ONNX Runtime's default: on
        return {"spinning": facts.get("thread_pool_spinning", True) is True,
                "spin_stop_after_run": facts.get("thread_pool_spin_stop_after_run", False) is True}

    @classmethod
    def deployment_options(cls) -> dict[str, object]:
        # ONNX Runtime's default is spinning on; stopping it after each run keeps one
        # session's idle pool (it spins for tens of ms) off the cores of the next one timed
        return {"spinning": True, "spin_stop_after_run": True}

    def _session_options(self) -> ort.SessionOptions:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads_in_effect()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        # Each op has its own session and thread pool, and the protocol interleaves many
        # of them: a pool that spins after its run keeps a core busy while the next
        # session runs (benchmarks/ort_spinning.py). Without spinning a pool sleeps as
        # soon as its work is done.
        for entry in SPIN_ENTRIES:
            options.add_session_config_entry(entry, "1" if self.spinning else "0")
        if self.spinning and self.spin_stop_after_run:
            options.add_session_config_entry("session.force_spinning_stop", "1")
        return options

    def _provider_chain_with_options(self) -> list[str | tuple[str, dict[str, str]]]:
        chain: list[str | tuple[str, dict[str, str]]] = []
        for provider in self._chain():
            if provider in GPU_PROVIDERS:
                options = {"device_id": str(self.device_index)}
                if provider == TENSORRT and self.precision == "fp16":
                    options["trt_fp16_enable"] = "True"
                chain.append((provider, options))
            else:
                chain.append(provider)
        return chain

    def _session(self, onnx_bytes: bytes) -> ort.InferenceSession:
        """A session on the chosen provider, refused when ONNX Runtime silently fell back to
        another (a CUDA provider whose libraries did not load runs on the CPU)."""
        import onnxruntime as ort

        session = ort.InferenceSession(
            onnx_bytes, sess_options=self._session_options(), providers=self._provider_chain_with_options()
        )
        self._session_providers = check_session_providers(self.provider, session.get_providers())
        return session

    def session_providers(self) -> list[str]:
        """The providers a session of this profiler actually gets (a null-op session is
        made once to find out, when no op has been prepared yet)."""
        if getattr(self, "_session_providers", None) is None:
            shape = (1, 1, 1, 1)
            self._session(OnnxFromModule(self._null_module(), shape, precision=self.precision)())
        return list(self._session_providers)

    def onnx_runner(self, onnx_bytes: bytes, input_shape: Sequence[int]) -> Prepared:
        """A runner of an ONNX model in a session of this profiler's options and providers,
        its timed input the seeded example input in the model's own input type."""
        session = self._session(onnx_bytes)
        x = self.example_input(input_shape).numpy().astype(_input_dtype(session))
        if self.on_gpu:
            return _BoundRun(session, x, self.device_index)
        return _SessionRun(session, x)

    def _prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Prepared:
        return self.onnx_runner(OnnxFromModule(module, input_shape, precision=self.precision)(), input_shape)

    def _layer_times(self, module: nn.Module, input_shape: tuple[int, ...], layers: list[str], runs: int,
                     warmup: int) -> LayerTimes:
        """The session profiler's kernel time of every node, each node credited to the
        layer its exported scope names; one session with this profiler's options."""
        import json
        import tempfile

        import onnxruntime as ort

        from densenas.profilers.layers import from_ort_trace

        onnx_bytes = OnnxFromModule(module, input_shape, precision=self.precision)()
        with tempfile.TemporaryDirectory() as tmp:
            options = self._session_options()
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tmp) / "ort-profile")
            session = ort.InferenceSession(onnx_bytes, sess_options=options,
                                           providers=self._provider_chain_with_options())
            check_session_providers(self.provider, session.get_providers())
            feed = {INPUT_NAME: self.example_input(input_shape).numpy().astype(_input_dtype(session))}
            for _ in range(warmup + runs):
                session.run(None, feed)
            trace = json.loads(Path(session.end_profiling()).read_text())
        return from_ort_trace(trace, layers, skip_runs=warmup)

    def _null_module(self) -> nn.Module:
        from torch import nn

        return nn.Identity()  # exports as a lone ONNX Identity: session.run and nothing else

    def _fingerprint_extra(self) -> dict[str, object]:
        extra: dict[str, object] = {
            "device_kind": "cuda" if self.on_gpu else "cpu",
            "provider": self.provider,
            "providers": self._chain(),
            "session_providers": self.session_providers(),  # what ONNX Runtime actually ran on
            "intra_op_threads": self.threads_in_effect(),
            "inter_op_threads": 1,
            "graph_optimization_level": "ORT_ENABLE_ALL",
            "execution_mode": "ORT_SEQUENTIAL",
            "thread_pool_spinning": self.spinning,
            "thread_pool_spin_stop_after_run": self.spin_stop_after_run,
        }
        if self.on_gpu:
            extra.update(hostinfo.cuda_device_facts(self.device_index))
        return extra
