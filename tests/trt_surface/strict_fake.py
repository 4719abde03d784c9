"""A strict fake ``tensorrt`` module built from a recorded API surface (``tensorrt-*.json``,
written by ``make_surface.py`` from the real bindings wheel).

Strict: the module, its classes and their instances expose exactly the names the real
version has; anything else raises ``AttributeError``, as the real module would. Every
method call is bound against the recorded pybind11 signatures (arity, keywords, and the
type of arguments declared as TensorRT classes or enums), so a call the real bindings
would reject raises ``TypeError``. A name the surface has but the fake does not model
raises ``NotImplementedError`` rather than passing silently.

Behaviour: just enough of TensorRT to build and run an engine from ONNX. Builder, network,
parser, config, optimisation profile, timing cache, runtime, engine and execution context
follow TensorRT's rules that the project depends on: strongly typed networks take their
types from the ONNX file and refuse weak-typing flags; TF32 is on until cleared; input
shapes outside the optimisation profile are refused; ``execute_async_v3`` needs every
address bound. The "engine" carries the ONNX model and runs it with ONNX Runtime on the
host, reading and writing the bound addresses, so outputs are real numbers. A context with
an ``IProfiler`` reports each ONNX node the engine would run (constants are folded at build)
as one layer named after the node, as TensorRT names a layer it did not fuse, the run's wall
time shared equally among them (so the times are not a measurement of any node). Host
memory stands in for GPU memory (``HostCuda``).
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import inspect
import json
import re
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SURFACE_DIR = Path(__file__).resolve().parent
ENGINE_MAGIC = b"FAKE-TRT-ENGINE\n"
CACHE_MAGIC = b"FAKE-TRT-TIMING\n"
WEAK_TYPING_FLAGS = ("FP16", "BF16", "INT8", "FP8", "INT4", "FP4", "OBEY_PRECISION_CONSTRAINTS",
                     "PREFER_PRECISION_CONSTRAINTS")
ONNX_TYPES = {1: "FLOAT", 10: "HALF", 6: "INT32", 7: "INT64", 9: "BOOL"}
NUMPY_TYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT32": np.int32, "INT64": np.int64, "BOOL": np.bool_}


def surface_paths() -> list[Path]:
    """The committed surfaces, oldest version first."""
    paths = list(SURFACE_DIR.glob("tensorrt-*.json"))
    return sorted(paths, key=lambda p: tuple(int(x) for x in p.stem.split("-", 1)[1].split(".")))


# -- signatures -----------------------------------------------------------------------------


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>" and not (ch == ">" and text[i - 1] == "-"):
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


@dataclass(frozen=True)
class Signature:
    text: str
    signature: inspect.Signature
    types: dict[str, str]
    none_defaults: frozenset[str]


def parse_signature(text: str) -> Signature | None:
    """A pybind11 signature line, ``name(self: T, a: U = <default>) -> R``; None for a
    line that is not one (pybind11's "no constructor" placeholder)."""
    m = re.match(r"^[A-Za-z_]\w*\(", text)
    if m is None:
        return None
    depth, end = 0, None
    for i in range(m.end() - 1, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                end = i
                break
    if end is None:
        return None
    params: list[inspect.Parameter] = []
    kinds = {"pos": inspect.Parameter.POSITIONAL_OR_KEYWORD}
    type_of: dict[str, str] = {}
    none_defaults = set()
    for raw in _split_top_level(text[m.end():end]):
        if raw == "*":
            kinds["pos"] = inspect.Parameter.KEYWORD_ONLY
            continue
        if raw == "/":
            params = [p.replace(kind=inspect.Parameter.POSITIONAL_ONLY) for p in params]
            continue
        if raw.startswith("**"):
            params.append(inspect.Parameter(raw[2:].split(":")[0].strip(), inspect.Parameter.VAR_KEYWORD))
            continue
        if raw.startswith("*"):
            params.append(inspect.Parameter(raw[1:].split(":")[0].strip(), inspect.Parameter.VAR_POSITIONAL))
            kinds["pos"] = inspect.Parameter.KEYWORD_ONLY
            continue
        name, _, rest = raw.partition(":")
        annotation, has_default, default = rest, False, ""
        if " = " in rest:
            annotation, _, default = rest.partition(" = ")
            has_default = True
        name = name.strip()
        type_of[name] = annotation.strip()
        if has_default and default.strip() == "None":
            none_defaults.add(name)
        params.append(inspect.Parameter(name, kinds["pos"], default=default if has_default else inspect.Parameter.empty))
    return Signature(text, inspect.Signature(params), type_of, frozenset(none_defaults))


# -- the strict machinery -------------------------------------------------------------------


class _Strict:
    """Base of every fake class: only names of the real class are visible."""

    _fake_names: frozenset[str] = frozenset()
    _fake_settable: frozenset[str] = frozenset()
    _fake_version = ""

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("__") or name.startswith("_fake"):
            return object.__getattribute__(self, name)
        cls = type(self)
        if name in cls._fake_names or _user_defined(cls, name) or (
            not _is_fake(cls) and name in object.__getattribute__(self, "__dict__")
        ):
            return object.__getattribute__(self, name)
        raise AttributeError(f"'{cls.__name__}' object has no attribute '{name}' (TensorRT {cls._fake_version})")

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if name.startswith("_fake") or name in cls._fake_settable or not _is_fake(cls):
            object.__setattr__(self, name, value)
            return
        what = "is read-only" if name in cls._fake_names else "does not exist"
        raise AttributeError(f"'{cls.__name__}'.{name} {what} (TensorRT {cls._fake_version})")


def _is_fake(cls: type) -> bool:
    return "_fake_qualname" in cls.__dict__


def _user_defined(cls: type, name: str) -> bool:
    return any(name in k.__dict__ for k in cls.__mro__ if not _is_fake(k) and k not in (_Strict, object, bytes))


def _make(cls: type, *args: Any, **kwargs: Any) -> Any:
    """An instance made the way TensorRT makes one internally (no Python constructor)."""
    obj = cls.__new__(cls, *args) if issubclass(cls, bytes) else object.__new__(cls)
    obj._fake_init(**kwargs)
    return obj


class FakeModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"module 'tensorrt' has no attribute '{name}' (TensorRT {self.__version__})")


@dataclass
class Knobs:
    """What a test can make the fake do, and what it saw."""

    builder_error: str | None = None  # Builder() raises this, as a too-old driver makes it
    builds: list[dict[str, Any]] = field(default_factory=list)
    executions: int = 0


# -- behaviour --------------------------------------------------------------------------------


class Behaviour:
    """The modelled members, per class qualname. Methods take the fake ``self``;
    ``_fake_*`` helpers are copied along."""

    def __init__(self, mod: FakeModule, knobs: Knobs) -> None:
        self.mod, self.knobs = mod, knobs

    def members(self) -> dict[str, dict[str, Any]]:
        trt, knobs = self.mod, self.knobs
        flag_bit = lambda f: 1 << int(f)  # noqa: E731 - how TensorRT encodes creation flags

        def dims(shape: Any) -> Any:
            return _make(trt.Dims, shape=tuple(int(d) for d in shape))

        def log(logger: Any, level: str, msg: str) -> None:
            logger.log(getattr(trt.ILogger.Severity, level), msg)

        def onnx_io(model_bytes: bytes) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            import onnx

            model = onnx.load_from_string(model_bytes)
            inits = {t.name for t in model.graph.initializer}

            def entry(v: Any) -> dict[str, Any]:
                t = v.type.tensor_type
                shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
                params = [d.dim_param if d.HasField("dim_param") else "" for d in t.shape.dim]
                return {"name": v.name, "shape": shape, "params": params, "dtype": ONNX_TYPES[t.elem_type]}

            return ([entry(v) for v in model.graph.input if v.name not in inits],
                    [entry(v) for v in model.graph.output])

        def executed_nodes(model_bytes: bytes) -> list[str]:
            """Nodes left after folding what depends only on weights, as a build does."""
            import onnx

            graph = onnx.load_from_string(model_bytes).graph
            constant = {t.name for t in graph.initializer}
            names = []
            for node in graph.node:
                if node.op_type == "Constant" or (node.input and all(i in constant for i in node.input)):
                    constant.update(node.output)
                else:
                    names.append(node.name)
            return names

        def checked(value: Any, cls: Any, what: str) -> Any:
            if not isinstance(value, cls):
                raise TypeError(f"{what}: incompatible value {type(value).__name__}, needs {cls.__qualname__}")
            return value

        # ILogger / Logger
        def logger_init(self: Any, *args: Any) -> None:
            self._fake_min = args[0] if args else None

        def logger_log(self: Any, severity: Any, msg: str) -> None:
            print(f"[fake TensorRT] {severity.name}: {msg}", file=sys.stderr)

        # Dims
        def dims_init(self: Any, shape: tuple[int, ...] = ()) -> None:
            self._fake_shape = tuple(shape)

        def dims_getitem(self: Any, i: Any) -> Any:
            return self._fake_shape[i]  # IndexError past the end ends iteration, as for the real one

        # Builder
        def builder_init(self: Any, logger: Any) -> None:
            if knobs.builder_error is not None:
                raise TypeError(knobs.builder_error)
            self._fake_logger = logger

        def create_network(self: Any, flags: int = 0) -> Any:
            return _make(trt.INetworkDefinition, flags=int(flags), logger=self._fake_logger)

        def create_builder_config(self: Any) -> Any:
            return _make(trt.IBuilderConfig)

        def create_optimization_profile(self: Any) -> Any:
            return _make(trt.IOptimizationProfile)

        def build_serialized_network(self: Any, network: Any, config: Any, *rest: Any) -> Any:
            logger = self._fake_logger
            if network._fake_model is None:
                log(logger, "ERROR", "network has no layers")
                return None
            strongly = network._fake_strongly_typed()
            weak = sorted(n for n in WEAK_TYPING_FLAGS if n in config._fake_flags)
            if strongly and weak:
                log(logger, "ERROR", f"IBuilderConfig flags {weak} are not allowed for a strongly typed network")
                return None
            profiles = config._fake_profiles
            for t in network._fake_inputs:
                if any(d < 0 for d in t["shape"]) and not any(t["name"] in p for p in profiles):
                    log(logger, "ERROR", f"input {t['name']} has dynamic dimensions and no optimization profile")
                    return None
            if config._fake_cache is None:
                log(logger, "ERROR", "no timing cache set")
                return None
            config._fake_cache._fake_entries.add(json.dumps([t["shape"] for t in network._fake_inputs]))
            header = {
                "version": trt.__version__,
                "strongly_typed": strongly,
                "inputs": network._fake_inputs,
                "outputs": network._fake_outputs,
                "profiles": profiles,
                "flags": sorted(config._fake_flags),
                "workspace": config._fake_pools.get("WORKSPACE"),
                "optimization_level": config._fake_level,
                "profiling_verbosity": config._fake_verbosity.name,
            }
            knobs.builds.append(header)
            blob = json.dumps(header).encode()
            data = ENGINE_MAGIC + len(blob).to_bytes(8, "little") + blob + network._fake_model
            return _make(trt.IHostMemory, data)

        # INetworkDefinition
        def network_init(self: Any, flags: int, logger: Any) -> None:
            self._fake_flags, self._fake_logger = flags, logger
            self._fake_model, self._fake_inputs, self._fake_outputs = None, [], []

        def network_strongly_typed(self: Any) -> bool:
            if not hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH"):
                return True  # TensorRT 11: every network is strongly typed
            return bool(self._fake_flags & flag_bit(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))

        def get_input(self: Any, index: int) -> Any:
            t = self._fake_inputs[index]
            return _make(trt.ITensor, entry=t)

        def get_flag(self: Any, flag: Any) -> bool:
            return bool(self._fake_flags & flag_bit(flag))

        # ITensor
        def tensor_init(self: Any, entry: dict[str, Any]) -> None:
            self._fake_entry = entry

        # OnnxParser
        def parser_init(self: Any, network: Any, logger: Any) -> None:
            self._fake_network, self._fake_errors = network, []

        def parse(self: Any, model: bytes, path: str | None = None) -> bool:
            try:
                inputs, outputs = onnx_io(bytes(model))
            except Exception as exc:  # what the real parser reports as a parse error
                self._fake_errors.append(f"cannot read the model: {type(exc).__name__}")
                return False
            net = self._fake_network
            net._fake_model, net._fake_inputs, net._fake_outputs = bytes(model), inputs, outputs
            return True

        def parse_from_file(self: Any, model: str) -> bool:
            return parse(self, Path(model).read_bytes(), model)

        def get_error(self: Any, index: int) -> Any:
            return _make(trt.ParserError, text=self._fake_errors[index])

        # IBuilderConfig
        def config_init(self: Any) -> None:
            self._fake_flags = {"TF32"}  # TensorRT's default
            self._fake_pools: dict[str, int] = {}
            self._fake_level = 3
            self._fake_profiles: list[dict[str, Any]] = []
            self._fake_cache = None
            self._fake_verbosity = trt.ProfilingVerbosity.LAYER_NAMES_ONLY  # TensorRT's default

        def verbosity_set(self: Any, value: Any) -> None:
            self._fake_verbosity = checked(value, trt.ProfilingVerbosity, "profiling_verbosity")

        def set_flag(self: Any, flag: Any) -> None:
            self._fake_flags.add(flag.name)

        def clear_flag(self: Any, flag: Any) -> None:
            self._fake_flags.discard(flag.name)

        def cfg_get_flag(self: Any, flag: Any) -> bool:
            return flag.name in self._fake_flags

        def set_memory_pool_limit(self: Any, pool: Any, pool_size: int) -> None:
            self._fake_pools[pool.name] = int(pool_size)

        def add_optimization_profile(self: Any, profile: Any) -> int:
            shapes = profile._fake_shapes
            ok = bool(shapes) and all(
                len(lo) == len(opt) == len(hi) and all(a <= b <= c for a, b, c in zip(lo, opt, hi)) and min(lo) >= 0
                for lo, opt, hi in shapes.values()
            )
            if not ok:
                return -1
            self._fake_profiles.append({k: [list(s) for s in v] for k, v in shapes.items()})
            return len(self._fake_profiles) - 1

        def create_timing_cache(self: Any, serialized_timing_cache: bytes) -> Any:
            data = bytes(serialized_timing_cache)
            if not data:
                return _make(trt.ITimingCache, entries=set())
            if not data.startswith(CACHE_MAGIC):
                raise RuntimeError("timing cache: bad magic")
            return _make(trt.ITimingCache, entries=set(json.loads(data[len(CACHE_MAGIC):])))

        def set_timing_cache(self: Any, cache: Any, ignore_mismatch: bool) -> bool:
            self._fake_cache = cache
            return True

        def get_timing_cache(self: Any) -> Any:
            return self._fake_cache

        def level_get(self: Any) -> int:
            return self._fake_level

        def level_set(self: Any, value: int) -> None:
            if not isinstance(value, int) or not 0 <= value <= 5:
                raise TypeError(f"builder_optimization_level: bad value {value!r}")
            self._fake_level = value

        # IOptimizationProfile
        def profile_init(self: Any) -> None:
            self._fake_shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self: Any, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - TensorRT's names
            self._fake_shapes[input] = tuple(tuple(int(d) for d in s) for s in (min, opt, max))

        # ITimingCache
        def cache_init(self: Any, entries: set[str]) -> None:
            self._fake_entries = entries

        def combine(self: Any, input_cache: Any, ignore_mismatch: bool) -> bool:
            self._fake_entries |= input_cache._fake_entries
            return True

        def cache_serialize(self: Any) -> Any:
            return _make(trt.IHostMemory, CACHE_MAGIC + json.dumps(sorted(self._fake_entries)).encode())

        # IHostMemory
        def host_init(self: Any) -> None:
            pass

        # ParserError
        def error_init(self: Any, text: str) -> None:
            self._fake_text = text

        # Runtime
        def runtime_init(self: Any, logger: Any) -> None:
            self._fake_logger = logger

        def deserialize(self: Any, serialized_engine: Any) -> Any:
            data = bytes(serialized_engine) if not isinstance(serialized_engine, bytes) else serialized_engine
            if not data.startswith(ENGINE_MAGIC):
                log(self._fake_logger, "ERROR", "deserialize_cuda_engine: not a serialized engine")
                return None
            n = int.from_bytes(data[len(ENGINE_MAGIC):len(ENGINE_MAGIC) + 8], "little")
            start = len(ENGINE_MAGIC) + 8
            header = json.loads(data[start:start + n])
            if header["version"] != trt.__version__:
                log(self._fake_logger, "ERROR", f"engine built by TensorRT {header['version']}")
                return None
            return _make(trt.ICudaEngine, header=header, model=data[start + n:], logger=self._fake_logger)

        # ICudaEngine
        def engine_init(self: Any, header: dict[str, Any], model: bytes, logger: Any) -> None:
            self._fake_header, self._fake_model, self._fake_logger = header, model, logger
            self._fake_io = {t["name"]: t for t in header["inputs"] + header["outputs"]}
            self._fake_order = [t["name"] for t in header["inputs"] + header["outputs"]]
            self._fake_session, self._fake_layers = None, []

        def io_tensor(self: Any, name: str) -> dict[str, Any]:
            return self._fake_io[name]

        def get_tensor_name(self: Any, index: int) -> str:
            return self._fake_order[index]

        def get_tensor_mode(self: Any, name: str) -> Any:
            inputs = {t["name"] for t in self._fake_header["inputs"]}
            return trt.TensorIOMode.INPUT if name in inputs else trt.TensorIOMode.OUTPUT

        def engine_tensor_shape(self: Any, name: str) -> Any:
            return dims(self._fake_io[name]["shape"])

        def get_tensor_dtype(self: Any, name: str) -> Any:
            return getattr(trt.DataType, self._fake_io[name]["dtype"])

        def get_tensor_profile_shape(self: Any, name: str, profile_index: int) -> list[Any]:
            return [dims(s) for s in self._fake_header["profiles"][profile_index][name]]

        def create_execution_context(self: Any, *args: Any) -> Any:
            return _make(trt.IExecutionContext, engine=self)

        # IExecutionContext
        def context_init(self: Any, engine: Any) -> None:
            self._fake_engine, self._fake_shapes, self._fake_addresses = engine, {}, {}
            self._fake_profiler = None

        def profiler_set(self: Any, value: Any) -> None:
            self._fake_profiler = checked(value, trt.IProfiler, "profiler")

        def set_input_shape(self: Any, name: str, shape: Any) -> bool:
            engine = self._fake_engine
            shape = tuple(int(d) for d in shape)
            built = engine._fake_io[name]["shape"]
            if len(shape) != len(built) or any(b >= 0 and b != s for b, s in zip(built, shape)):
                log(engine._fake_logger, "ERROR", f"set_input_shape: {shape} does not match {built}")
                return False
            profile = engine._fake_header["profiles"][0][name] if engine._fake_header["profiles"] else None
            if profile is not None and not all(lo <= s <= hi for lo, s, hi in zip(profile[0], shape, profile[2])):
                log(engine._fake_logger, "ERROR", f"set_input_shape: {shape} is outside the profile {profile}")
                return False
            self._fake_shapes[name] = shape
            return True

        def resolved_shape(self: Any, name: str) -> tuple[int, ...]:
            engine = self._fake_engine
            entry = engine._fake_io[name]
            if name in self._fake_shapes:
                return self._fake_shapes[name]
            sizes = {}
            for t in engine._fake_header["inputs"]:
                for param, size in zip(t["params"], self._fake_shapes.get(t["name"], t["shape"])):
                    if param:
                        sizes[param] = size
            return tuple(d if d >= 0 else sizes.get(p, -1) for d, p in zip(entry["shape"], entry["params"]))

        def context_tensor_shape(self: Any, name: str) -> Any:
            return dims(self._fake_resolved(name))

        def set_tensor_address(self: Any, name: str, memory: int) -> bool:
            if name not in self._fake_engine._fake_io or int(memory) == 0:
                return False
            self._fake_addresses[name] = int(memory)
            return True

        def execute_async_v3(self: Any, stream_handle: int) -> bool:
            import onnxruntime as ort

            engine = self._fake_engine
            feeds = {}
            for t in engine._fake_header["inputs"]:
                shape = self._fake_resolved(t["name"])
                if t["name"] not in self._fake_addresses or any(d < 0 for d in shape):
                    log(engine._fake_logger, "ERROR", f"execute_async_v3: input {t['name']} not ready")
                    return False
                feeds[t["name"]] = _read(self._fake_addresses[t["name"]], shape, NUMPY_TYPES[t["dtype"]])
            if any(t["name"] not in self._fake_addresses for t in engine._fake_header["outputs"]):
                log(engine._fake_logger, "ERROR", "execute_async_v3: an output address is not set")
                return False
            if engine._fake_session is None:
                engine._fake_session = ort.InferenceSession(engine._fake_model, providers=["CPUExecutionProvider"])
                engine._fake_layers = executed_nodes(engine._fake_model)
            t0 = time.perf_counter()
            results = engine._fake_session.run([t["name"] for t in engine._fake_header["outputs"]], feeds)
            if self._fake_profiler is not None:
                ms = (time.perf_counter() - t0) * 1e3 / max(len(engine._fake_layers), 1)
                for layer in engine._fake_layers:
                    self._fake_profiler.report_layer_time(layer, ms)
            for t, value in zip(engine._fake_header["outputs"], results):
                expected = self._fake_resolved(t["name"])
                if tuple(value.shape) != expected:
                    raise AssertionError(f"fake engine: output {t['name']} is {value.shape}, bound as {expected}")
                value = np.ascontiguousarray(value, dtype=NUMPY_TYPES[t["dtype"]])
                ctypes.memmove(self._fake_addresses[t["name"]], value.ctypes.data, value.nbytes)
            knobs.executions += 1
            return True

        return {
            "ILogger": {"__init__": logger_init, "log": logger_log},
            "Logger": {"__init__": logger_init, "log": logger_log},
            "Dims": {"__init__": lambda self, shape=(): dims_init(self, shape), "_fake_init": dims_init,
                     "__getitem__": dims_getitem, "__len__": lambda self: len(self._fake_shape),
                     "__repr__": lambda self: f"Dims{self._fake_shape}"},
            "Builder": {"__init__": builder_init, "create_network": create_network,
                        "create_builder_config": create_builder_config,
                        "create_optimization_profile": create_optimization_profile,
                        "build_serialized_network": build_serialized_network,
                        "platform_has_fast_fp16": property(lambda self: True),
                        "platform_has_tf32": property(lambda self: True)},
            "INetworkDefinition": {"_fake_init": network_init, "_fake_strongly_typed": network_strongly_typed,
                                   "num_inputs": property(lambda self: len(self._fake_inputs)),
                                   "num_outputs": property(lambda self: len(self._fake_outputs)),
                                   "get_input": get_input, "get_flag": get_flag,
                                   "flags": property(lambda self: self._fake_flags)},
            "ITensor": {"_fake_init": tensor_init, "name": property(lambda self: self._fake_entry["name"]),
                        "shape": property(lambda self: dims(self._fake_entry["shape"])),
                        "dtype": property(lambda self: getattr(trt.DataType, self._fake_entry["dtype"]))},
            "OnnxParser": {"__init__": parser_init, "parse": parse, "parse_from_file": parse_from_file,
                           "get_error": get_error, "num_errors": property(lambda self: len(self._fake_errors))},
            "ParserError": {"_fake_init": error_init, "desc": lambda self: self._fake_text},
            "IBuilderConfig": {"_fake_init": config_init, "set_flag": set_flag, "clear_flag": clear_flag,
                               "get_flag": cfg_get_flag, "set_memory_pool_limit": set_memory_pool_limit,
                               "add_optimization_profile": add_optimization_profile,
                               "create_timing_cache": create_timing_cache, "set_timing_cache": set_timing_cache,
                               "get_timing_cache": get_timing_cache,
                               "builder_optimization_level": property(level_get, level_set),
                               "profiling_verbosity": property(lambda self: self._fake_verbosity, verbosity_set),
                               "num_optimization_profiles": property(lambda self: len(self._fake_profiles))},
            "IOptimizationProfile": {"_fake_init": profile_init, "set_shape": set_shape},
            "ITimingCache": {"_fake_init": cache_init, "combine": combine, "serialize": cache_serialize},
            "IHostMemory": {"_fake_init": host_init, "nbytes": property(lambda self: len(self))},
            "Runtime": {"__init__": runtime_init, "deserialize_cuda_engine": deserialize},
            "ICudaEngine": {"_fake_init": engine_init, "_fake_tensor": io_tensor,
                            "num_io_tensors": property(lambda self: len(self._fake_order)),
                            "get_tensor_name": get_tensor_name, "get_tensor_mode": get_tensor_mode,
                            "get_tensor_shape": engine_tensor_shape, "get_tensor_dtype": get_tensor_dtype,
                            "get_tensor_profile_shape": get_tensor_profile_shape,
                            "num_optimization_profiles": property(lambda self: len(self._fake_header["profiles"])),
                            "create_execution_context": create_execution_context},
            "IExecutionContext": {"_fake_init": context_init, "_fake_resolved": resolved_shape,
                                  "set_input_shape": set_input_shape, "get_tensor_shape": context_tensor_shape,
                                  "set_tensor_address": set_tensor_address, "execute_async_v3": execute_async_v3,
                                  "profiler": property(lambda self: self._fake_profiler, profiler_set)},
            "IProfiler": {"__init__": lambda self: None},
        }


def _read(address: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    count = int(np.prod(shape))
    raw = (ctypes.c_char * (count * np.dtype(dtype).itemsize)).from_address(address)
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape).copy()


# -- assembling the module --------------------------------------------------------------------


def _checked(qualname: str, member: str, sigs: list[Signature], impl: Callable[..., Any], classes: dict) -> Callable:
    """``impl`` behind the real overloads: a call no overload accepts is a TypeError."""

    def call(*args: Any, **kwargs: Any) -> Any:
        errors = []
        for sig in sigs:
            try:
                bound = sig.signature.bind(*args, **kwargs)
            except TypeError as exc:
                errors.append(str(exc))
                continue
            bad = _type_mismatch(sig, bound, classes)
            if bad is None:
                return impl(*args, **kwargs)
            errors.append(bad)
        raise TypeError(
            f"{qualname}.{member}(): incompatible arguments ({'; '.join(errors)}); supported: "
            + " | ".join(s.text for s in sigs)
        )

    call.__name__ = member
    return call


def _type_mismatch(sig: Signature, bound: inspect.BoundArguments, classes: dict[str, type]) -> str | None:
    for name, value in list(bound.arguments.items())[1:]:  # not self
        annotation = sig.types.get(name, "")
        m = re.fullmatch(r"tensorrt_bindings\.tensorrt\.([\w.]+)", annotation)
        if m is None or m.group(1) not in classes:
            continue
        want = classes[m.group(1)]
        if value is None and name in sig.none_defaults:
            continue
        if want.__name__.startswith("Dims") and isinstance(value, (tuple, list)):
            continue  # pybind11 converts sequences to Dims implicitly
        if not isinstance(value, want):
            return f"{name} must be {m.group(1)}, got {type(value).__name__}"
    return None


def _unmodelled(qualname: str, member: str, version: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"strict fake: {qualname}.{member} exists in TensorRT {version} but is not modelled")

    return call


def _no_constructor(qualname: str) -> Callable[..., Any]:
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"tensorrt.{qualname}: No constructor defined!")

    return init


def build_module(surface_path: Path) -> tuple[FakeModule, Knobs]:
    """A fresh strict fake of the TensorRT whose surface is at ``surface_path``."""
    surface = json.loads(Path(surface_path).read_text())
    version = surface["version"]
    mod = FakeModule("tensorrt", f"strict fake of TensorRT {version}")
    mod.__version__ = version
    mod.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # importlib.util.find_spec reads it
    knobs = Knobs()
    behaviour = Behaviour(mod, knobs).members()
    classes: dict[str, type] = {}
    entries = surface["classes"]

    def create(qualname: str) -> type:
        if qualname in classes:
            return classes[qualname]
        entry = entries[qualname]
        short = qualname.rsplit(".", 1)[-1]
        if "enum" in entry:
            cls: type = enum.IntEnum(short, [(m, i) for i, m in enumerate(entry["enum"])])
            cls.__qualname__ = qualname
            classes[qualname] = cls
            return cls
        bases = tuple(create(b) for b in entry["bases"] if b in entries)
        if not bases:
            bases = (_Strict, bytes) if qualname == "IHostMemory" else (_Strict,)
        cls = type(short, bases, {"_fake_qualname": qualname, "__module__": "tensorrt"})
        cls.__qualname__ = qualname
        classes[qualname] = cls
        return cls

    for qualname in entries:
        create(qualname)
    for qualname, entry in entries.items():
        cls = classes[qualname]
        if "enum" in entry:
            continue
        impl = behaviour.get(qualname, {})
        names, settable = set(), set()
        for base in cls.__mro__[1:]:
            names |= getattr(base, "_fake_names", frozenset())
            settable |= getattr(base, "_fake_settable", frozenset())
        for member, info in entry["members"].items():
            names.add(member)
            kind = info["kind"]
            if kind in ("method", "staticmethod"):
                modelled = member in impl or member == "__init__"  # parse only what can be called
                sigs = [s for s in map(parse_signature, info["signatures"]) if s is not None] if modelled else []
                if member == "__init__" and not sigs:
                    setattr(cls, member, _no_constructor(qualname))
                elif member in impl:
                    setattr(cls, member, _checked(qualname, member, sigs, impl[member], classes) if sigs else impl[member])
                else:
                    setattr(cls, member, _unmodelled(qualname, member, version))
            elif kind == "property":
                prop = impl.get(member)
                if not isinstance(prop, property):
                    stub = _unmodelled(qualname, member, version)
                    prop = property(stub, stub if info["settable"] else None)
                elif not info["settable"]:
                    prop = property(prop.fget)
                setattr(cls, member, prop)
                if info["settable"]:
                    settable.add(member)
            elif kind == "class":
                setattr(cls, member, classes[info["name"]])
            elif kind == "value":
                enum_cls = classes.get(info["type"])
                if enum_cls is not None and member in getattr(enum_cls, "__members__", {}):
                    setattr(cls, member, enum_cls[member])
        for helper, fn in impl.items():
            if helper.startswith("_fake") or helper == "__repr__":
                setattr(cls, helper, fn)
        if "_fake_init" not in impl and "_fake_init" not in vars(cls):
            cls._fake_init = lambda self, **kw: None
        cls._fake_names, cls._fake_settable, cls._fake_version = frozenset(names), frozenset(settable), version
    for name in surface["classes"]:
        if "." not in name:
            setattr(mod, name, classes[name])
    for name, info in surface["values"].items():
        if info["kind"] == "class":
            setattr(mod, name, classes[info["name"]])
        elif info["type"] in classes and name in getattr(classes[info["type"]], "__members__", {}):
            setattr(mod, name, classes[info["type"]][name])
        elif info["type"] == "DataType":  # the lower-case aliases (float32 is DataType.FLOAT)
            aliases = {"float32": "FLOAT", "float16": "HALF", "bfloat16": "BF16"}
            setattr(mod, name, classes["DataType"][aliases.get(name, name.upper())])
    for name in surface["functions"]:
        setattr(mod, name, _unmodelled("tensorrt", name, version))
    mod._fake_knobs = knobs
    return mod, knobs


# -- host memory standing in for the GPU ----------------------------------------------------


class HostBuffers:
    """``DeviceBuffers`` in host memory: the fake engine reads and writes these addresses."""

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Any:
        import torch

        return torch.empty(shape, dtype=dtype)

    def new_stream(self) -> object:
        return object()

    def handle(self, stream: object) -> int:
        return 0  # the default stream's handle

    def time(self, stream: object, launch: Callable[[], None], n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            launch()
        return time.perf_counter() - t0

    def write(self, stream: object, buffer: Any, x: Any) -> None:
        buffer.copy_(x)

    def synchronize(self, stream: object) -> None:
        pass

    def to_host(self, buffer: Any) -> np.ndarray:
        return buffer.float().numpy()


@dataclass
class HostCuda:
    """``CudaDevice`` with one pretend GPU whose memory is host memory."""

    capability_: tuple[int, int] = (9, 0)
    name_: str = "Fake GPU"

    def unavailable_reason(self) -> str | None:
        return None

    def count(self) -> int:
        return 1

    def select(self, index: int) -> None:
        pass

    def capability(self, index: int) -> tuple[int, int]:
        return self.capability_

    def name(self, index: int) -> str:
        return self.name_

    def facts(self, index: int) -> dict[str, object]:
        return {"gpu": self.name_, "compute_capability": "{}.{}".format(*self.capability_)}

    def buffers(self, index: int) -> HostBuffers:
        return HostBuffers()


def use_fake(monkeypatch: Any, surface_path: Path, cuda: HostCuda | None = None) -> tuple[FakeModule, Knobs]:
    """Install a fresh fake as ``tensorrt`` and host memory as the backend's GPU, for one test."""
    from densenas.profilers import tensorrt_backend as backend

    mod, knobs = build_module(surface_path)
    monkeypatch.setitem(sys.modules, "tensorrt", mod)
    monkeypatch.setattr(backend, "CUDA", cuda or HostCuda(), raising=False)
    monkeypatch.setattr(backend, "_LOGGER", None, raising=False)
    monkeypatch.setattr(backend, "_AVAILABLE", {}, raising=False)
    return mod, knobs
