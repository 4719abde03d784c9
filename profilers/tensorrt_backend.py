"""TensorRT 10: the op is exported to ONNX, built into an engine (cached on disk) and
run with ``execute_async_v3`` between CUDA events.

Split so that little needs a GPU: ``EngineCache`` (paths and keys) is pure Python;
``build_serialized_engine`` is the one loader that turns ONNX into an engine, shared with
``densenas export --format tensorrt``; ``EngineRunner`` is the runner. ``tensorrt`` is
imported only inside functions, so importing this module works anywhere.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from densenas.profilers import hostinfo
from densenas.profilers.base import Profiler
from densenas.profilers.errors import ProfilerError
from densenas.profilers.onnx_loader import OnnxFromModule, onnx_structure_hash, write_atomic
from densenas.profilers.protocol import Prepared, Protocol

if TYPE_CHECKING:
    import torch
    from torch import nn

INSTALL_HINT = "pip install 'densenas[tensorrt]' on a machine with an NVIDIA GPU, or use --backend onnxruntime"
MIN_MAJOR = 10
DEFAULT_WORKSPACE_BYTES = 1 << 30

ShapeSpec = Sequence[int] | tuple[Sequence[int], Sequence[int], Sequence[int]]

_LOGGER: Any = None


def _logger() -> Any:
    """One process-wide TensorRT logger (TensorRT expects a single one), warnings and up."""
    global _LOGGER
    if _LOGGER is None:
        import tensorrt as trt

        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def default_cache_dir() -> Path:
    """Where engines and timing caches live when no ``cache_dir`` is given."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "densenas"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


class EngineCache:
    """Engines on disk, one folder per TensorRT version and GPU (an engine is valid for
    exactly those), one file per op structure and precision.

    Keys hash the ONNX graph without its weight values (``onnx_structure_hash``): an
    engine cached here is for *timing*; never ship one (build from the real model).
    """

    def __init__(self, root: str | os.PathLike[str], *, trt_version: str, device: str) -> None:
        self.root = Path(root)
        self.trt_version = trt_version
        self.device = device
        self.folder = self.root / "tensorrt" / f"trt-{_slug(trt_version)}" / _slug(device)

    @staticmethod
    def key(onnx_bytes: bytes, precision: str) -> str:
        if precision not in ("fp32", "fp16"):
            raise ProfilerError(f"tensorrt: precision must be fp32 or fp16, got {precision!r}")
        return f"{onnx_structure_hash(onnx_bytes)[:40]}-{precision}"

    def engine_path(self, key: str) -> Path:
        return self.folder / f"{key}.engine"

    @property
    def timing_cache_path(self) -> Path:
        return self.folder / "timing.cache"

    def load(self, key: str) -> bytes | None:
        try:
            return self.engine_path(key).read_bytes()
        except FileNotFoundError:
            return None

    def store(self, key: str, engine: bytes) -> Path:
        return write_atomic(self.engine_path(key), engine)

    def discard(self, key: str) -> None:
        self.engine_path(key).unlink(missing_ok=True)


def _profile_shapes(shape: ShapeSpec) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """A single shape means min = opt = max; otherwise (min, opt, max)."""
    if len(shape) == 3 and all(isinstance(s, Sequence) for s in shape):
        lo, opt, hi = (tuple(int(d) for d in s) for s in shape)  # type: ignore[union-attr]
        return lo, opt, hi
    fixed = tuple(int(d) for d in shape)  # type: ignore[arg-type]
    return fixed, fixed, fixed


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    data = b""
    if path is not None and path.is_file():
        data = path.read_bytes()
    try:
        cache = config.create_timing_cache(data)
    except Exception:  # an unreadable or foreign cache file: start afresh, it is only a speed-up
        cache = config.create_timing_cache(b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _save_timing_cache(config: Any, path: Path) -> None:
    """Merge with whatever another process wrote meanwhile, then replace atomically."""
    cache = config.get_timing_cache()
    if path.is_file():
        with contextlib.suppress(Exception):  # an unreadable cache on disk is simply replaced
            cache.combine(config.create_timing_cache(path.read_bytes()), False)
    write_atomic(path, bytes(memoryview(cache.serialize())))


def build_serialized_engine(
    onnx: bytes | str | os.PathLike[str],
    *,
    precision: str = "fp32",
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache_path: str | os.PathLike[str] | None = None,
    input_shapes: Mapping[str, ShapeSpec] | None = None,
) -> bytes:
    """Build a serialized TensorRT engine from an ONNX model (bytes or a file path).

    fp16 sets ``BuilderFlag.FP16`` (TensorRT may then pick fp16 kernels; I/O stays fp32).
    Inputs with dynamic dimensions need ``input_shapes[name]``: one shape, or
    (min, opt, max). A timing cache file, when given, is read first and updated after,
    so rebuilding the same layers is fast.
    """
    import tensorrt as trt

    if precision not in ("fp32", "fp16"):
        raise ProfilerError(f"tensorrt: precision must be fp32 or fp16, got {precision!r}")
    logger = _logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if isinstance(onnx, bytes):
        source, ok = "<bytes>", parser.parse(onnx)
    else:
        source = str(onnx)
        if not Path(source).is_file():
            raise ProfilerError(f"tensorrt: ONNX file not found: {source}")
        ok = parser.parse_from_file(source)  # resolves external weight files next to it
    if not ok:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ProfilerError(f"tensorrt: cannot parse ONNX {source}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)

    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dynamic = [tensor for tensor in inputs if any(d < 0 for d in tensor.shape)]
    if dynamic:
        profile = builder.create_optimization_profile()
        for tensor in dynamic:
            if not input_shapes or tensor.name not in input_shapes:
                raise ProfilerError(
                    f"tensorrt: input {tensor.name!r} has dynamic shape {tuple(tensor.shape)}; "
                    "pass input_shapes={name: shape or (min, opt, max)}"
                )
            profile.set_shape(tensor.name, *_profile_shapes(input_shapes[tensor.name]))
        config.add_optimization_profile(profile)

    cache_path = Path(timing_cache_path) if timing_cache_path is not None else None
    _load_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ProfilerError(f"tensorrt: engine build failed for ONNX {source} (see the TensorRT log above)")
    if cache_path is not None:
        _save_timing_cache(config, cache_path)
    return bytes(memoryview(serialized))


def _torch_dtype(trt_dtype: Any) -> torch.dtype:
    import torch

    table = {
        "FLOAT": torch.float32,
        "HALF": torch.float16,
        "BF16": torch.bfloat16,
        "INT8": torch.int8,
        "UINT8": torch.uint8,
        "INT32": torch.int32,
        "INT64": torch.int64,
        "BOOL": torch.bool,
    }
    try:
        return table[trt_dtype.name]
    except KeyError:
        raise ProfilerError(f"tensorrt: engine I/O type {trt_dtype.name} has no torch equivalent") from None


class _UndeserializableEngine(ProfilerError):
    """The engine bytes were not accepted by this TensorRT and GPU."""


class EngineRunner(Prepared):
    """An engine with its buffers bound once (torch CUDA tensors, in ``buffers`` by tensor
    name), run on its own stream and timed with CUDA events on that stream. Also used by
    ``densenas export`` to check an engine's output against PyTorch."""

    def __init__(self, engine_bytes: bytes, x: torch.Tensor, device: torch.device) -> None:
        import tensorrt as trt
        import torch

        self.runtime = trt.Runtime(_logger())
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise _UndeserializableEngine("tensorrt: cannot deserialize the engine (built by another TensorRT or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ProfilerError(f"tensorrt: expected one engine input, found {inputs}")
        self.buffers: dict[str, torch.Tensor] = {}
        for name in inputs:
            if any(d < 0 for d in self.engine.get_tensor_shape(name)):
                self.context.set_input_shape(name, tuple(x.shape))
            self.buffers[name] = x.to(device=device, dtype=_torch_dtype(self.engine.get_tensor_dtype(name)))
        for name in names:
            if name not in self.buffers:
                shape = tuple(self.context.get_tensor_shape(name))
                self.buffers[name] = torch.empty(
                    shape, dtype=_torch_dtype(self.engine.get_tensor_dtype(name)), device=device
                )
        for name, tensor in self.buffers.items():
            self.context.set_tensor_address(name, tensor.data_ptr())
        self.stream = torch.cuda.Stream(device)
        self.stream.wait_stream(torch.cuda.current_stream(device))  # buffers were filled there
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def run(self, n: int) -> float:
        execute, handle = self.context.execute_async_v3, self.stream.cuda_stream
        self.start.record(self.stream)
        for _ in range(n):
            if not execute(handle):
                raise ProfilerError("tensorrt: execute_async_v3 failed (see the TensorRT log above)")
        self.end.record(self.stream)
        self.end.synchronize()
        return self.start.elapsed_time(self.end) * 1e-3

    def close(self) -> None:
        self.stream.synchronize()
        del self.context, self.engine, self.runtime, self.buffers


_EngineRun = EngineRunner  # the name densenas.export first imported


class TensorRTProfiler(Profiler):
    """TensorRT engines built from the op's ONNX export, cached under ``cache_dir``
    (default ``~/.cache/densenas``) together with a shared timing cache."""

    name = "tensorrt"
    device_kind = "cuda"
    precisions = ("fp32", "fp16")

    def __init__(
        self,
        *,
        threads: int | None = None,
        precision: str = "fp32",
        device_index: int = 0,
        cache_dir: str | None = None,
        protocol: Protocol | None = None,
        workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    ) -> None:
        super().__init__(
            threads=threads, precision=precision, device_index=device_index, cache_dir=cache_dir, protocol=protocol
        )
        if not isinstance(workspace_bytes, int) or workspace_bytes < 1:
            raise ProfilerError(f"{self.name}: workspace_bytes must be a positive integer, got {workspace_bytes!r}")
        self.workspace_bytes = workspace_bytes
        self._cache: EngineCache | None = None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        if importlib.util.find_spec("tensorrt") is None:
            return False, f"{cls.name}: the tensorrt package is not installed; {INSTALL_HINT}"
        try:
            import tensorrt as trt
        except Exception as exc:  # a broken install raises more than ImportError
            detail = " ".join(str(exc).split())
            return False, f"{cls.name}: cannot import tensorrt ({type(exc).__name__}: {detail}); {INSTALL_HINT}"
        version = str(getattr(trt, "__version__", "0"))
        major = version.split(".")[0]
        if not major.isdigit() or int(major) < MIN_MAJOR:
            return False, f"{cls.name}: TensorRT {version} found, {MIN_MAJOR} or newer needed; {INSTALL_HINT}"
        try:
            reason = hostinfo.cuda_unavailable_reason()
        except ImportError as exc:  # pragma: no cover - torch is a hard dependency
            return False, f"{cls.name}: torch cannot be imported ({exc}); pip install torch"
        if reason is not None:
            return False, f"{cls.name}: {reason}; run on a machine with an NVIDIA GPU or use --backend onnxruntime"
        return True, f"{cls.name}: TensorRT {version}"

    @classmethod
    def backend_version(cls) -> str | None:
        return hostinfo.library_version("tensorrt")

    @property
    def timing_scope(self) -> str:
        return (
            "IExecutionContext.execute_async_v3 between CUDA events on a dedicated stream, I/O buffers on the "
            "device bound once; no host-device copies; no CUDA graph"
        )

    @property
    def device(self) -> torch.device:
        import torch

        return torch.device("cuda", self.device_index)

    def device_name(self) -> str:
        import torch

        return torch.cuda.get_device_name(self.device_index)

    def engine_cache(self) -> EngineCache:
        if self._cache is None:
            import tensorrt as trt
            import torch

            major, minor = torch.cuda.get_device_capability(self.device_index)
            self._cache = EngineCache(
                self.cache_dir if self.cache_dir is not None else default_cache_dir(),
                trt_version=trt.__version__,
                device=f"{self.device_name()}-sm{major}{minor}",
            )
        return self._cache

    def _activate(self) -> None:
        import torch

        count = torch.cuda.device_count()
        if self.device_index >= count:
            raise ProfilerError(
                f"{self.name}: device_index {self.device_index} is out of range ({count} GPU(s) visible)"
            )
        torch.cuda.set_device(self.device_index)

    def _engine_bytes(self, onnx_bytes: bytes) -> tuple[str, bytes]:
        cache = self.engine_cache()
        key = EngineCache.key(onnx_bytes, self.precision)
        engine = cache.load(key)
        if engine is None:
            engine = build_serialized_engine(
                onnx_bytes,
                precision=self.precision,
                workspace_bytes=self.workspace_bytes,
                timing_cache_path=cache.timing_cache_path,
            )
            cache.store(key, engine)
        return key, engine

    def _prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> Prepared:
        onnx_bytes = OnnxFromModule(module, input_shape).to_bytes()
        key, engine = self._engine_bytes(onnx_bytes)
        x = self.example_input(input_shape)
        try:
            return EngineRunner(engine, x, self.device)
        except _UndeserializableEngine:
            # a damaged cache file: rebuild once from the ONNX
            self.engine_cache().discard(key)
            _, engine = self._engine_bytes(onnx_bytes)
            return EngineRunner(engine, x, self.device)

    def _fingerprint_extra(self) -> dict[str, object]:
        facts: dict[str, object] = {
            "builder_flags": ["FP16"] if self.precision == "fp16" else [],
            "workspace_bytes": self.workspace_bytes,
            "io_dtype": "fp32",
        }
        facts.update(hostinfo.cuda_device_facts(self.device_index))
        return facts
