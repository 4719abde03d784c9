"""TensorRT 10 and 11: the op is exported to ONNX, built into a strongly typed engine
(cached on disk) and run with ``execute_async_v3`` between CUDA events.

Split so that little needs a GPU: ``BuildSettings`` and ``EngineCache`` (keys and paths)
are pure Python; ``build_serialized_engine`` is the one loader that turns ONNX into an
engine, shared with ``densenas export --format tensorrt``; ``EngineRunner`` is the runner
that profiling times and export's parity check infers with.
Everything the GPU itself does for them (what the GPU is, its buffers, stream and timer)
goes through ``CUDA`` (a ``CudaDevice``), so the TensorRT calls can be exercised against
a strict fake of the bindings on a host without a GPU. ``tensorrt`` is imported only
inside functions, so importing this module works anywhere.

Precision follows the ONNX file's types: networks are strongly typed (TensorRT 11 has
no other kind; on 10.x the ``STRONGLY_TYPED`` creation flag), so fp16 means an fp16
ONNX export with fp16 I/O, and no weak-typing builder flag (``BuilderFlag.FP16``, gone
in 11) is used. TF32 is set or cleared explicitly and recorded.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from densenas.profilers import hostinfo
from densenas.profilers.atomic import write_bytes
from densenas.profilers.base import Profiler
from densenas.profilers.errors import ProfilerError
from densenas.profilers.onnx_loader import OUTPUT_NAME, OnnxFromModule, onnx_structure_hash
from densenas.profilers.protocol import Prepared, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from densenas.profilers.layers import LayerTimes

INSTALL_HINT = "pip install 'densenas[tensorrt]' on a machine with an NVIDIA GPU, or use --backend onnxruntime"
MIN_MAJOR = 10
DEFAULT_WORKSPACE_BYTES = 1 << 30
DEFAULT_OPTIMIZATION_LEVEL = 3  # TensorRT's own default; recorded so a change shows in keys and LUTs
# Oldest GPU each TensorRT major builds for (support matrices; the CUDA 13 builds this
# project installs start at Turing). A newer major than listed is held to the last row.
MIN_COMPUTE_CAPABILITY: dict[int, tuple[int, int]] = {10: (7, 5), 11: (7, 5)}

ShapeSpec = Sequence[int] | tuple[Sequence[int], Sequence[int], Sequence[int]]


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


# -- the GPU side ---------------------------------------------------------------------------


class DeviceBuffers:
    """I/O buffers, a stream and a timer on one CUDA device (torch's CUDA tensors and events)."""

    def __init__(self, device_index: int) -> None:
        import torch

        self.device = torch.device("cuda", device_index)

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        import torch

        return torch.empty(shape, dtype=dtype, device=self.device)

    def new_stream(self) -> Any:
        import torch

        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))  # buffers were filled there
        return stream

    def handle(self, stream: Any) -> int:
        return int(stream.cuda_stream)

    def time(self, stream: Any, launch: Callable[[], None], n: int) -> float:
        """Seconds for ``n`` launches, between CUDA events recorded on ``stream``."""
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        for _ in range(n):
            launch()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) * 1e-3

    def write(self, stream: Any, buffer: torch.Tensor, x: torch.Tensor) -> None:
        """``x`` into ``buffer`` (cast to its dtype), ordered before the next launch on ``stream``."""
        import torch

        with torch.cuda.stream(stream):
            buffer.copy_(x)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def to_host(self, buffer: torch.Tensor) -> np.ndarray:
        return buffer.float().cpu().numpy()


class CudaDevice:
    """What the TensorRT code asks of CUDA, through torch: whether a GPU is usable, what
    it is, and its buffers."""

    def unavailable_reason(self) -> str | None:
        return hostinfo.cuda_unavailable_reason()

    def count(self) -> int:
        import torch

        return torch.cuda.device_count()

    def select(self, index: int) -> None:
        import torch

        torch.cuda.set_device(index)

    def capability(self, index: int) -> tuple[int, int]:
        import torch

        major, minor = torch.cuda.get_device_capability(index)
        return int(major), int(minor)

    def name(self, index: int) -> str:
        import torch

        return torch.cuda.get_device_name(index)

    def facts(self, index: int) -> dict[str, object]:
        return hostinfo.cuda_device_facts(index)

    def buffers(self, index: int) -> DeviceBuffers:
        return DeviceBuffers(index)


CUDA: CudaDevice = CudaDevice()


# -- TensorRT's logger ------------------------------------------------------------------------

_LOGGER: Any = None


def _logger() -> Any:
    """One process-wide logger (TensorRT expects a single one): warnings and up go to
    stderr, and errors are kept so a failure can name TensorRT's own reason."""
    global _LOGGER
    import tensorrt as trt

    if _LOGGER is None or _LOGGER.module is not trt:  # a different tensorrt module was loaded
        _LOGGER = _make_logger(trt)
    return _LOGGER


def _make_logger(trt: Any) -> Any:
    severity = trt.ILogger.Severity
    errors = (severity.ERROR, severity.INTERNAL_ERROR)
    shown = (*errors, severity.WARNING)

    class Logger(trt.ILogger):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.module = trt
            self.errors: list[str] = []

        def log(self, level: Any, msg: str) -> None:
            if level in errors:
                self.errors.append(_one_line(msg))
            if level in shown:
                print(f"[TensorRT] {msg}", file=sys.stderr)

    return Logger()


def _since(mark: int) -> str:
    """TensorRT's errors logged since ``mark`` (an index into the logger's list), as a suffix."""
    errors = _logger().errors[mark:]
    return f": {errors[-1]}" if errors else " (see the TensorRT log above)"


# -- building -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildSettings:
    """Every builder setting that changes an engine: part of its cache key and its LUT."""

    precision: str = "fp32"
    tf32: bool = False
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "fp16"):
            raise ProfilerError(f"tensorrt: precision must be fp32 or fp16, got {self.precision!r}")
        if not isinstance(self.tf32, bool):
            raise ProfilerError(f"tensorrt: tf32 must be true or false, got {self.tf32!r}")
        if not isinstance(self.workspace_bytes, int) or isinstance(self.workspace_bytes, bool) or self.workspace_bytes < 1:
            raise ProfilerError(f"tensorrt: workspace_bytes must be a positive integer, got {self.workspace_bytes!r}")
        level = self.optimization_level
        if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 5:
            raise ProfilerError(f"tensorrt: optimization_level must be an integer 0-5, got {level!r}")

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "strongly_typed": True}


def _profile_shapes(shape: ShapeSpec) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """A single shape means min = opt = max; otherwise (min, opt, max)."""
    if len(shape) == 3 and all(isinstance(s, Sequence) for s in shape):
        lo, opt, hi = (tuple(int(d) for d in s) for s in shape)  # type: ignore[union-attr]
        return lo, opt, hi
    fixed = tuple(int(d) for d in shape)  # type: ignore[arg-type]
    return fixed, fixed, fixed


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower() or "unknown"


def default_cache_dir() -> Path:
    """Where engines and timing caches live when no ``cache_dir`` is given."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "densenas"


class EngineCache:
    """Engines on disk, one folder per TensorRT version and GPU (an engine is valid for
    exactly those), one file per op structure and build settings.

    Keys hash the ONNX graph without its weight values (``onnx_structure_hash``): an
    engine cached here is for *timing*; never ship one (build from the real model).
    """

    def __init__(self, root: str | os.PathLike[str], *, trt_version: str, device: str) -> None:
        self.root = Path(root)
        self.trt_version = trt_version
        self.device = device
        self.folder = self.root / "tensorrt" / f"trt-{_slug(trt_version)}" / _slug(device)

    @staticmethod
    def key(onnx_bytes: bytes, settings: BuildSettings, input_shapes: Mapping[str, ShapeSpec] | None = None) -> str:
        """Structure hash, precision, and a digest of every build setting and profile shape."""
        if not isinstance(settings, BuildSettings):
            raise ProfilerError(f"tensorrt: engine keys take BuildSettings, got {type(settings).__name__}")
        shapes = {name: _profile_shapes(s) for name, s in sorted((input_shapes or {}).items())}
        blob = json.dumps({"settings": settings.to_dict(), "shapes": shapes}, sort_keys=True).encode()
        return f"{onnx_structure_hash(onnx_bytes)[:40]}-{settings.precision}-{hashlib.sha256(blob).hexdigest()[:12]}"

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
        return write_bytes(self.engine_path(key), engine)

    def discard(self, key: str) -> None:
        self.engine_path(key).unlink(missing_ok=True)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive ``fcntl`` lock on ``path`` + ``.lock``: processes sharing a timing
    cache take turns merging into it, so none overwrites another's new entries."""
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _timing_cache_from(config: Any, data: bytes) -> Any:
    """A timing cache from serialized bytes, or None when TensorRT refuses them."""
    try:
        return config.create_timing_cache(data)
    except Exception:  # an unreadable or foreign cache file: it is only a speed-up
        return None


def _load_timing_cache(config: Any, path: Path | None) -> None:
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = _timing_cache_from(config, data) if data else None
    if cache is None or not config.set_timing_cache(cache, False):
        cache = _timing_cache_from(config, b"")
        if cache is None or not config.set_timing_cache(cache, False):
            raise ProfilerError("tensorrt: cannot create an empty timing cache")


def _save_timing_cache(config: Any, path: Path) -> None:
    """Under the lock: merge with what another process wrote meanwhile, replace atomically."""
    cache = config.get_timing_cache()
    if cache is None:
        return
    with file_lock(path):
        if path.is_file():
            on_disk = _timing_cache_from(config, path.read_bytes())
            if on_disk is not None:
                cache.combine(on_disk, False)  # a mismatched cache on disk is simply replaced
        write_bytes(path, bytes(memoryview(cache.serialize())))


def _check_input_types(trt: Any, network: Any, precision: str) -> list[Any]:
    """A strongly typed network computes in its inputs' types: fp32 needs FLOAT inputs,
    fp16 HALF ones (an fp16 ONNX export), or the engine would not be what it is called."""
    want = trt.DataType.HALF if precision == "fp16" else trt.DataType.FLOAT
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    for tensor in inputs:
        if tensor.dtype != want:
            raise ProfilerError(
                f"tensorrt: ONNX input {tensor.name!r} is {tensor.dtype.name}, precision {precision} needs "
                f"{want.name}; export the ONNX with precision={precision!r}"
            )
    return inputs


def build_serialized_engine(
    onnx: bytes,
    *,
    settings: BuildSettings | None = None,
    timing_cache_path: str | os.PathLike[str] | None = None,
    input_shapes: Mapping[str, ShapeSpec] | None = None,
) -> bytes:
    """Build a serialized TensorRT engine from ONNX model bytes (``OnnxFromModule``'s).

    The network is strongly typed, so ``settings.precision`` must match the ONNX
    file's input type (fp16: export the ONNX in fp16). TF32 is set or cleared as
    ``settings.tf32`` says. Inputs with dynamic dimensions need ``input_shapes[name]``:
    one shape, or (min, opt, max). A timing cache file, when given, is read first and
    merged into after, under a file lock, so rebuilding the same layers is fast.
    """
    import tensorrt as trt

    settings = settings if settings is not None else BuildSettings()
    logger = _logger()
    mark = len(logger.errors)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    if network is None:
        raise ProfilerError(f"tensorrt: cannot create a network{_since(mark)}")
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(_one_line(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise ProfilerError(f"tensorrt: cannot parse the ONNX model: {errors or 'no reason given'}")
    inputs = _check_input_types(trt, network, settings.precision)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_bytes)
    # TF32 is on by default in TensorRT builders: an "fp32" engine is fp32 only with it off
    if settings.tf32:
        config.set_flag(trt.BuilderFlag.TF32)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)
    config.builder_optimization_level = settings.optimization_level
    # TensorRT's default, set so it stays: the per-layer diagnostic reads the layer names
    # (named after their ONNX nodes) that this keeps in the engine
    config.profiling_verbosity = trt.ProfilingVerbosity.LAYER_NAMES_ONLY

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
        if config.add_optimization_profile(profile) < 0:
            shapes = {t.name: _profile_shapes(input_shapes[t.name]) for t in dynamic}  # type: ignore[index]
            raise ProfilerError(f"tensorrt: optimisation profile {shapes} rejected (min <= opt <= max?){_since(mark)}")

    cache_path = Path(timing_cache_path) if timing_cache_path is not None else None
    _load_timing_cache(config, cache_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ProfilerError(f"tensorrt: engine build failed{_since(mark)}")
    if cache_path is not None:
        _save_timing_cache(config, cache_path)
    return bytes(memoryview(serialized))


# -- running --------------------------------------------------------------------------------


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
    """An engine with its buffers bound once (``buffers`` by tensor name, in the engine's
    own I/O types), run on its own stream and timed with CUDA events on that stream.
    ``infer`` copies its input into the bound input buffer, so it runs at the bound shape."""

    def __init__(self, engine_bytes: bytes, x: torch.Tensor, device_index: int = 0) -> None:
        import tensorrt as trt

        mark = len(_logger().errors)
        self.gpu = CUDA.buffers(device_index)
        self.runtime = trt.Runtime(_logger())
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise _UndeserializableEngine(
                f"tensorrt: cannot deserialize the engine (built by another TensorRT or GPU?){_since(mark)}"
            )
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ProfilerError(f"tensorrt: cannot create an execution context{_since(mark)}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise ProfilerError(f"tensorrt: expected one engine input, found {inputs}")
        (self._input,) = inputs
        self._set_input_shape(self._input, tuple(x.shape), mark)
        self.buffers: dict[str, torch.Tensor] = {}
        for name in names:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ProfilerError(f"tensorrt: tensor {name!r} has unresolved shape {shape}")
            self.buffers[name] = self.gpu.empty(shape, _torch_dtype(self.engine.get_tensor_dtype(name)))
            if not self.context.set_tensor_address(name, self.buffers[name].data_ptr()):
                raise ProfilerError(f"tensorrt: cannot bind tensor {name!r}{_since(mark)}")
        self.stream = self.gpu.new_stream()
        self._handle = self.gpu.handle(self.stream)
        self.gpu.write(self.stream, self.buffers[self._input], x)

    def _set_input_shape(self, name: str, shape: tuple[int, ...], mark: int) -> None:
        built = tuple(self.engine.get_tensor_shape(name))
        if all(d >= 0 for d in built):
            if built != shape:
                raise ProfilerError(f"tensorrt: the engine's input {name!r} is {built}, the input is {shape}")
            return
        if not self.context.set_input_shape(name, shape):
            lo, _, hi = (tuple(d) for d in self.engine.get_tensor_profile_shape(name, 0))
            raise ProfilerError(
                f"tensorrt: input shape {shape} is outside the engine's profile for {name!r} "
                f"(min {lo}, max {hi}){_since(mark)}"
            )

    def _launch(self) -> None:
        if not self.context.execute_async_v3(self._handle):
            raise ProfilerError("tensorrt: execute_async_v3 failed (see the TensorRT log above)")

    def run(self, n: int) -> float:
        return self.gpu.time(self.stream, self._launch, n)

    def infer(self, x: np.ndarray) -> np.ndarray:
        import torch

        bound = self.buffers[self._input]
        if tuple(x.shape) != tuple(bound.shape):
            raise ProfilerError(f"tensorrt: the runner's input {self._input!r} is {tuple(bound.shape)}, got {x.shape}")
        self.gpu.write(self.stream, bound, torch.from_numpy(x))
        self._launch()
        self.gpu.synchronize(self.stream)
        return self.gpu.to_host(self.buffers[OUTPUT_NAME])

    def layer_reports(self, warmup: int, runs: int) -> list[list[tuple[str, float]]]:
        """TensorRT's own time of each engine layer, (name, ms) per run after ``warmup``
        runs. With a profiler set, each launch reports its layers as it completes (and so
        runs synchronously); the runner is left profiled, so close it after."""
        # held here as long as the context: TensorRT keeps only a pointer to it
        self.layer_profiler = profiler = _layer_profiler()
        self.context.profiler = profiler
        per_run = []
        for i in range(warmup + runs):
            profiler.reports = []
            self._launch()
            self.gpu.synchronize(self.stream)
            if i >= warmup:
                per_run.append(profiler.reports)
        return per_run

    def close(self) -> None:
        self.gpu.synchronize(self.stream)
        del self.context, self.engine, self.runtime, self.buffers


def _layer_profiler() -> Any:
    """A ``trt.IProfiler`` that keeps every layer time reported to it."""
    import tensorrt as trt

    class LayerProfiler(trt.IProfiler):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.reports: list[tuple[str, float]] = []

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self.reports.append((layer_name, float(ms)))

    return LayerProfiler()


# -- the profiler ---------------------------------------------------------------------------

_AVAILABLE: dict[tuple[int, int], tuple[bool, str]] = {}


def _trt_major(version: str) -> int | None:
    major = version.split(".")[0]
    return int(major) if major.isdigit() else None


class TensorRTProfiler(Profiler):
    """TensorRT engines built from the op's ONNX export (strongly typed, in the profile's
    precision), cached under ``cache_dir`` (default ``~/.cache/densenas``) together
    with a shared timing cache. ``tf32`` lets fp32 layers use TF32 (TensorRT's default
    for deployments; off here unless asked, so "fp32" means fp32)."""

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
        tf32: bool = False,
        optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL,
    ) -> None:
        super().__init__(
            threads=threads, precision=precision, device_index=device_index, cache_dir=cache_dir, protocol=protocol
        )
        self.settings = BuildSettings(precision, tf32, workspace_bytes, optimization_level)
        self._cache: EngineCache | None = None

    @property
    def workspace_bytes(self) -> int:
        return self.settings.workspace_bytes

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Whether TensorRT can build engines here: it imports, is 10 or newer, a GPU is
        visible and new enough for this major, and a builder can be created (which fails
        when the driver is older than TensorRT's CUDA build needs)."""
        if importlib.util.find_spec("tensorrt") is None:
            return False, f"{cls.name}: the tensorrt package is not installed; {INSTALL_HINT}"
        try:
            import tensorrt as trt
        except Exception as exc:  # a broken install raises more than ImportError
            return False, f"{cls.name}: cannot import tensorrt ({type(exc).__name__}: {_one_line(exc)}); {INSTALL_HINT}"
        key = (id(trt), id(CUDA))
        if key not in _AVAILABLE:
            _AVAILABLE[key] = cls._check_can_build(trt)
        return _AVAILABLE[key]

    @classmethod
    def _check_can_build(cls, trt: Any) -> tuple[bool, str]:
        version = str(getattr(trt, "__version__", "0"))
        major = _trt_major(version)
        if major is None or major < MIN_MAJOR:
            return False, f"{cls.name}: TensorRT {version} found, {MIN_MAJOR} or newer needed; {INSTALL_HINT}"
        try:
            reason = CUDA.unavailable_reason()
        except ImportError as exc:  # pragma: no cover - torch is a hard dependency
            return False, f"{cls.name}: torch cannot be imported ({exc}); pip install torch"
        if reason is not None:
            return False, f"{cls.name}: {reason}; run on a machine with an NVIDIA GPU or use --backend onnxruntime"
        have = CUDA.capability(0)
        need = MIN_COMPUTE_CAPABILITY.get(major, MIN_COMPUTE_CAPABILITY[max(MIN_COMPUTE_CAPABILITY)])
        if have < need:
            return False, (
                f"{cls.name}: {CUDA.name(0)} has compute capability {have[0]}.{have[1]}, TensorRT {version} needs "
                f"{need[0]}.{need[1]} or newer; use --backend torch-cuda on this GPU"
            )
        try:
            builder = trt.Builder(_logger())
            if builder is None or builder.create_builder_config() is None:
                raise RuntimeError("no builder")
        except Exception as exc:
            return False, (
                f"{cls.name}: TensorRT {version} cannot create a builder on {CUDA.name(0)} "
                f"({type(exc).__name__}: {_one_line(exc)}); the NVIDIA driver is probably older than this TensorRT's "
                "CUDA build needs: update the driver, or install the TensorRT build for the CUDA it supports "
                "(tensorrt-cu12 or tensorrt-cu13)"
            )
        return True, f"{cls.name}: TensorRT {version}"

    @classmethod
    def backend_version(cls) -> str | None:
        return hostinfo.library_version("tensorrt")

    @classmethod
    def options_from_fingerprint(cls, facts: Mapping[str, object]) -> dict[str, object]:
        # fingerprints from before TF32 was recorded were taken with TensorRT's default: on
        options: dict[str, object] = {"tf32": facts.get("tf32", True) is True}
        for name in ("workspace_bytes", "optimization_level"):
            value = facts.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                options[name] = value
        return options

    @property
    def timing_scope(self) -> str:
        return (
            "IExecutionContext.execute_async_v3 between CUDA events on a dedicated stream, I/O buffers on the "
            f"device in {self.precision} bound once; no host-device copies; no CUDA graph"
        )

    def device_name(self) -> str:
        return CUDA.name(self.device_index)

    def engine_cache(self) -> EngineCache:
        if self._cache is None:
            import tensorrt as trt

            major, minor = CUDA.capability(self.device_index)
            self._cache = EngineCache(
                self.cache_dir if self.cache_dir is not None else default_cache_dir(),
                trt_version=trt.__version__,
                device=f"{self.device_name()}-sm{major}{minor}",
            )
        return self._cache

    def _activate(self) -> None:
        count = CUDA.count()
        if self.device_index >= count:
            raise ProfilerError(
                f"{self.name}: device_index {self.device_index} is out of range ({count} GPU(s) visible)"
            )
        CUDA.select(self.device_index)

    def _engine_bytes(self, onnx_bytes: bytes) -> tuple[str, bytes]:
        cache = self.engine_cache()
        key = EngineCache.key(onnx_bytes, self.settings)
        engine = cache.load(key)
        if engine is None:
            engine = build_serialized_engine(onnx_bytes, settings=self.settings, timing_cache_path=cache.timing_cache_path)
            cache.store(key, engine)
        return key, engine

    def engine_runner(self, engine_bytes: bytes, input_shape: Sequence[int]) -> EngineRunner:
        """A runner of a serialized engine on this profiler's GPU, its timed input the
        seeded example input in the engine's own input type."""
        return EngineRunner(engine_bytes, self.example_input(input_shape), self.device_index)

    def _prepare(self, module: nn.Module, input_shape: tuple[int, ...]) -> EngineRunner:
        onnx_bytes = OnnxFromModule(module, input_shape, precision=self.precision)()
        key, engine = self._engine_bytes(onnx_bytes)
        try:
            return self.engine_runner(engine, input_shape)
        except _UndeserializableEngine:
            # a damaged cache file: rebuild once from the ONNX
            self.engine_cache().discard(key)
            _, engine = self._engine_bytes(onnx_bytes)
            return self.engine_runner(engine, input_shape)

    def _layer_times(self, module: nn.Module, input_shape: tuple[int, ...], layers: list[str], runs: int,
                     warmup: int) -> LayerTimes:
        """TensorRT's ``IProfiler`` on the engine the profiler times, each layer credited
        to the network layer its fused ONNX nodes came from."""
        from densenas.profilers.layers import from_tensorrt_reports

        runner = self._prepare(module, input_shape)
        try:
            reports = runner.layer_reports(warmup=warmup, runs=runs)
        finally:
            runner.close()
        return from_tensorrt_reports(reports, layers)

    def _fingerprint_extra(self) -> dict[str, object]:
        facts: dict[str, object] = {
            "network_flags": ["STRONGLY_TYPED"],
            "builder_flags": ["TF32"] if self.settings.tf32 else [],
            "tf32": self.settings.tf32,
            "workspace_bytes": self.settings.workspace_bytes,
            "optimization_level": self.settings.optimization_level,
            "io_dtype": self.precision,
        }
        facts.update(CUDA.facts(self.device_index))
        return facts

