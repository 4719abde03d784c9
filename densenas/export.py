"""Export a derived network for deployment: an ONNX file or a TensorRT engine, each
checked against PyTorch before it is written.

The ONNX graph comes from the loader the profilers use (``profilers.onnx_loader``), so
what is shipped is exported exactly as what was timed. It is then passed through ONNX
Runtime's basic graph optimiser (constant folding, Conv+BN fusion, dead-node removal:
rewrites that keep standard ONNX ops, so the file runs on any execution provider) and
written as the optimised graph, the one a deployment runs (fp16 graphs skip that pass:
see ``export_onnx_model``). A file is written only once
it has passed ``onnx.checker``, carries no BatchNormalization node, and matches the
PyTorch model within the tolerance; otherwise nothing is left at ``out``.

TensorRT engines are built by ``profilers.tensorrt_backend.build_serialized_engine``,
the builder ``profile --backend tensorrt`` uses. Parity runs on the profilers' own
runners (ONNX Runtime's session, TensorRT's engine runner: what profile and bench time)
against the PyTorch model on torch-cpu's runner.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from densenas.arch import Arch
from densenas.choices import Precision
from densenas.errors import DensenasError
from densenas.fileio import write_bytes

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from densenas.profilers import Prepared, Profiler
    from densenas.profilers.ort import OnnxRuntimeProfiler
    from densenas.profilers.tensorrt_backend import TensorRTProfiler

FORMATS = ("onnx", "tensorrt")

# fp32: ONNX Runtime and PyTorch run the same float32 arithmetic in a different order
# (and with BN folded into the conv weights); differences stay near 1e-6 on O(1) outputs.
FP32_TOLERANCE = 1e-4
# fp16: every tensor is rounded to 11 significant bits (unit roundoff 4.9e-4) between
# layers, and the error compounds over the ~20-60 layers of a derived network; on
# random and trained weights it lands near 1e-2 of the output's scale. Allow 5e-2 of the
# output's scale (max |logit|, at least 1), so the bound means "fp16 rounding", not a bug.
FP16_RELATIVE_TOLERANCE = 5e-2


def default_tolerance(precision: str, reference_max: float) -> float:
    """The parity bound for a precision, given the largest |output| of the PyTorch model."""
    if precision == "fp16":
        return FP16_RELATIVE_TOLERANCE * max(1.0, reference_max)
    return FP32_TOLERANCE


@dataclass(frozen=True)
class ParityCheck:
    """One comparison of the exported model with PyTorch on a seeded random input."""

    batch: int
    max_abs_diff: float
    tolerance: float
    reference_max: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {"batch": self.batch, "max_abs_diff": self.max_abs_diff, "tolerance": self.tolerance,
                "reference_max_abs": self.reference_max, "ok": self.ok}


@dataclass
class ExportResult:
    """What was written, and the evidence that it computes what the PyTorch model does."""

    path: Path
    format: str
    precision: str
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    weights: str
    checks: list[ParityCheck]
    runtime: str
    op_counts: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    batch_profile: tuple[int, int, int] | None = None  # a dynamic TensorRT engine's (min, opt, max) batch

    @property
    def max_abs_diff(self) -> float:
        return max(c.max_abs_diff for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.path),
            "format": self.format,
            "precision": self.precision,
            "input_shape": list(self.input_shape),
            "dynamic_batch": self.dynamic_batch,
            "weights": self.weights,
            "runtime": self.runtime,
            "max_abs_diff": self.max_abs_diff,
            "tolerance": max(c.tolerance for c in self.checks),
            "parity": [c.to_dict() for c in self.checks],
            "nodes": sum(self.op_counts.values()),
            "batchnorm_nodes": self.op_counts.get("BatchNormalization", 0),
            "op_counts": dict(sorted(self.op_counts.items())),
            "size_bytes": self.size_bytes,
            **({"batch_profile": dict(zip(("min", "opt", "max"), self.batch_profile))} if self.batch_profile else {}),
        }


# -- the model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """Trained weights read from a file, with what the file says they belong to."""

    state_dict: dict[str, Any]
    num_classes: int | None
    net_config: str | None
    description: str
    supernet_space: str | None = None  # set for a search checkpoint: the weights are the supernet's


def read_weights(path: str | Path) -> Weights:
    """Read ``densenas train`` output with ``weights_only=True`` (no code runs): its
    ``weights.pt`` (``{"state_dict", "arch", "num_classes", ...}``), its training
    ``checkpoint.pt`` (``{"model", ...}``) or a bare state_dict."""
    import torch

    from densenas.runtime import read_torch_file

    p = Path(path)
    obj = read_torch_file(p)
    if not isinstance(obj, dict):
        raise DensenasError(f"{p}: expected a state_dict or a checkpoint dict, got {type(obj).__name__}")
    schema = obj.get("schema")
    if isinstance(schema, str) and schema.startswith("densenas.search_checkpoint"):
        return _search_checkpoint_weights(p, obj)
    if "state_dict" in obj:
        state, field_name = obj["state_dict"], "state_dict"
    elif "model" in obj and isinstance(obj.get("model"), dict):
        state, field_name = obj["model"], "model"  # a training checkpoint
    else:
        state, field_name = obj, "(top level)"
    if not isinstance(state, dict) or not state or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise DensenasError(f"{p}: field {field_name}: expected a mapping of parameter names to tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from a DDP wrapper
    nc = obj.get("num_classes")
    arch = obj.get("arch") if isinstance(obj.get("arch"), dict) else {}
    epoch = obj.get("epoch")
    return Weights(
        state_dict=state,
        num_classes=nc if isinstance(nc, int) and not isinstance(nc, bool) and nc > 0 else None,
        net_config=arch.get("net_config") if isinstance(arch.get("net_config"), str) else None,
        description=f"{p}" + (f" (epoch {epoch})" if isinstance(epoch, int) and not isinstance(epoch, bool) else ""),
    )


def _search_checkpoint_weights(p: Path, obj: dict[str, Any]) -> Weights:
    """A search checkpoint holds the supernet; the derived network inherits from it."""
    import torch

    model, settings = obj.get("model"), obj.get("settings")
    if not isinstance(model, dict) or not all(isinstance(v, torch.Tensor) for v in model.values()):
        raise DensenasError(f"{p}: field model: expected the supernet's state_dict")
    space = settings.get("space") if isinstance(settings, dict) else None
    if not isinstance(space, str) or not space:
        raise DensenasError(f"{p}: field settings.space: expected the searched space's name or path")
    epoch = obj.get("epoch")
    classifier = model.get("classifier.fc.weight")
    return Weights(
        state_dict=model,
        num_classes=int(classifier.shape[0]) if isinstance(classifier, torch.Tensor) else None,
        net_config=None,
        description=f"{p} (search checkpoint" + (f", epoch {epoch}" if isinstance(epoch, int) else "") + ")",
        supernet_space=space,
    )


def build_model(arch: Arch, weights: str | Path | None = None, *, seed: int = 0) -> tuple[nn.Module, str]:
    """The derived network in eval mode, with trained weights or seeded random ones.
    A weights file trained with another class count than the arch's sets the classifier."""
    import dataclasses

    import torch

    from densenas.arch import to_net_config
    from densenas.nets.derived import DerivedNet
    from densenas.runtime import load_state

    w = read_weights(weights) if weights is not None else None
    if w is not None and w.net_config is not None and w.net_config != to_net_config(arch):
        raise DensenasError(f"{w.description}: weights were trained for another architecture ({w.net_config})")
    if w is not None and w.num_classes is not None and w.num_classes != arch.num_classes:
        arch = dataclasses.replace(arch, num_classes=w.num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DerivedNet(arch)
    if w is None:
        return net.eval(), f"random (seed {seed})"
    if w.supernet_space is not None:
        from densenas.nets.inherit import inherit_from_supernet
        from densenas.space import SearchSpace

        space = SearchSpace.load(w.supernet_space)
        if space.name != arch.space:
            raise DensenasError(f"{w.description}: searched space {space.name}, the architecture is of {arch.space}")
        notes = inherit_from_supernet(net, arch, space, w.state_dict, source=w.description)
        return net.eval(), "; ".join([f"{w.description}, inherited from the supernet", *notes])
    load_state(net, w.state_dict, source=w.description, target="this architecture")
    return net.eval(), w.description


def seeded_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """A standard-normal fp32 input: the same one for every runtime compared."""
    import torch

    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).numpy()


def check_parity(module: nn.Module, runner_for: Callable[[tuple[int, ...]], Prepared], input_shape: tuple[int, ...],
                 batches: list[int], *, precision: str, tolerance: float | None, seed: int, what: str,
                 ) -> list[ParityCheck]:
    """At each batch, on a seeded input, the exported model's runner (``runner_for(shape)``,
    one the profilers time) against the fp32 model on torch-cpu's runner; a difference
    above the tolerance is one DensenasError naming ``what``."""
    import numpy as np

    from densenas.profilers.torch_cpu import TorchCPUProfiler

    pytorch = TorchCPUProfiler()
    checks = []
    for i, batch in enumerate(batches):
        shape = (batch, *input_shape[1:])
        x = seeded_input(shape, seed + i)
        with pytorch.runner(module, shape) as reference, runner_for(shape) as exported:
            ref, got = reference.infer(x), exported.infer(x)
        if ref.shape != got.shape:
            raise DensenasError(f"exported model returns shape {got.shape}, PyTorch returns {ref.shape}")
        ref_max = float(np.abs(ref).max())
        diff = float(np.abs(ref.astype(np.float64) - got.astype(np.float64)).max())
        tol = default_tolerance(precision, ref_max) if tolerance is None else float(tolerance)
        check = ParityCheck(batch, diff, tol, ref_max)
        if not check.ok:
            raise DensenasError(
                f"{what}: output differs from PyTorch by {check.max_abs_diff:.3g} at batch {check.batch}, "
                f"above the tolerance {check.tolerance:.3g}; nothing was written"
            )
        checks.append(check)
    return checks


def parity_profiler(fmt: str, precision: str) -> Profiler:
    """The profiler whose runner checks an export: ONNX Runtime on the CPU (fed in the
    model's own input type), or TensorRT in ``precision``, refused in one line
    (ProfilerUnavailable) where it cannot run."""
    if fmt == "onnx":
        from densenas.profilers.ort import CPU, OnnxRuntimeProfiler

        return OnnxRuntimeProfiler(providers=[CPU])
    from densenas.profilers.tensorrt_backend import TensorRTProfiler

    profiler = TensorRTProfiler(precision=precision)
    profiler.check_available()
    return profiler


# -- ONNX ---------------------------------------------------------------------------------


def optimize_onnx(raw: bytes) -> bytes:
    """ONNX Runtime's basic-level optimiser over ``raw``. Basic rewrites keep standard
    ONNX ops only; extended and higher levels may emit provider-specific fused ops that
    another runtime could not load."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="densenas-export-") as tmp:
        optimised = Path(tmp) / "optimised.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(optimised)
        options.log_severity_level = 3
        ort.InferenceSession(raw, sess_options=options, providers=["CPUExecutionProvider"])
        return optimised.read_bytes()


def _clean_and_check(model_bytes: bytes, where: str) -> tuple[bytes, dict[str, int]]:
    """Drop opset imports no node uses (ORT lists all of its own domains), run the full
    checker, and insist that every BatchNormalization was folded away."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    used = {n.domain for n in model.graph.node} | {""}
    kept = [op for op in model.opset_import if op.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise DensenasError(f"{where}: the optimised ONNX model fails onnx.checker: {exc}") from None
    counts = dict(Counter(n.op_type for n in model.graph.node))
    if counts.get("BatchNormalization"):
        raise DensenasError(
            f"{where}: {counts['BatchNormalization']} BatchNormalization node(s) were not fused into a convolution"
        )
    return model.SerializeToString(), counts


def export_onnx_model(
    module: nn.Module,
    input_shape: tuple[int, ...],
    out: str | Path,
    *,
    precision: str = "fp32",
    dynamic_batch: bool = False,
    tolerance: float | None = None,
    weights: str = "",
    seed: int = 0,
    profiler: OnnxRuntimeProfiler | None = None,
) -> ExportResult:
    """Export ``module`` (fp32, any device) to an optimised, checked ONNX file at ``out``,
    its parity checked on ``profiler``'s runner (default ``parity_profiler``'s)."""
    from densenas.profilers.onnx_loader import OnnxFromModule

    _check_precision(precision)
    out = Path(out)
    ort_cpu = profiler if profiler is not None else parity_profiler("onnx", precision)
    raw = OnnxFromModule(module.eval(), input_shape, dynamic_batch=dynamic_batch, precision=precision)()
    # fp16: ORT's CPU optimiser would wrap each fp16 op the CPU provider lacks in Casts to
    # fp32 and save them, pinning a GPU deployment to fp32. The exporter's constant folding
    # has already folded BN into the convolutions; ship its graph as is.
    data, counts = _clean_and_check(optimize_onnx(raw) if precision == "fp32" else raw, str(out))
    # a symbolic batch is checked at a second size too: a graph that works at one size only is caught
    batches = [input_shape[0], input_shape[0] + 2] if dynamic_batch else [input_shape[0]]
    checks = check_parity(module, lambda shape: ort_cpu.onnx_runner(data, shape), input_shape, batches,
                          precision=precision, tolerance=tolerance, seed=seed, what=f"{out}: ONNX Runtime")
    write_bytes(out, data)
    return ExportResult(out, "onnx", precision, tuple(input_shape), dynamic_batch, weights, checks,
                        f"onnxruntime {ort_cpu.backend_version()} ({ort_cpu.provider})", counts, len(data))


def _check_precision(precision: str) -> None:
    Precision.parse(precision, "--precision")


# -- TensorRT -----------------------------------------------------------------------------


DEFAULT_MAX_BATCH = 32  # the largest batch a --dynamic-batch engine accepts unless --max-batch says


def batch_profile(batch: int, dynamic_batch: bool, max_batch: int | None) -> tuple[int, int, int] | None:
    """The (min, opt, max) batch a dynamic-batch TensorRT engine is built for: 1, the
    export batch, and ``max_batch`` (default the larger of 32 and the export batch)."""
    if max_batch is not None and not dynamic_batch:
        raise DensenasError("--max-batch needs --dynamic-batch (a static engine runs at --batch only)")
    if not dynamic_batch:
        return None
    hi = max_batch if max_batch is not None else max(DEFAULT_MAX_BATCH, batch)
    if hi < batch:
        raise DensenasError(f"--max-batch must be at least --batch ({batch}), got {hi}")
    return 1, batch, hi


def export_tensorrt_engine(
    module: nn.Module,
    input_shape: tuple[int, ...],
    out: str | Path,
    *,
    precision: str = "fp32",
    dynamic_batch: bool = False,
    max_batch: int | None = None,
    tolerance: float | None = None,
    weights: str = "",
    seed: int = 0,
    profiler: TensorRTProfiler | None = None,
) -> ExportResult:
    """Build a serialized TensorRT engine from the module's ONNX export and check it
    against PyTorch on ``profiler``'s runner (default ``parity_profiler``'s, which checks
    that TensorRT runs here). The ONNX is exported in ``precision`` (the network is
    strongly typed, so its types are the engine's), TF32 is off, and the reference is the
    fp32 model on the CPU, as for the ONNX export. A dynamic batch is built for
    (1, batch, max_batch) and checked at each of those sizes. Without a GPU or TensorRT:
    ProfilerUnavailable, one line; a TensorRT failure is a ProfilerError, one line."""
    from densenas.profilers.onnx_loader import INPUT_NAME, OnnxFromModule
    from densenas.profilers.tensorrt_backend import build_serialized_engine

    _check_precision(precision)
    profile = batch_profile(input_shape[0], dynamic_batch, max_batch)
    trt_profiler = profiler if profiler is not None else parity_profiler("tensorrt", precision)
    out = Path(out)
    rest = tuple(input_shape[1:])
    shapes = {INPUT_NAME: tuple((b, *rest) for b in profile)} if profile else None
    onnx = OnnxFromModule(module, input_shape, dynamic_batch=dynamic_batch, precision=precision, device="cpu")()
    engine = _tensorrt_call(
        lambda: build_serialized_engine(onnx, settings=trt_profiler.settings, input_shapes=shapes), out)
    checks = _tensorrt_call(lambda: check_parity(
        module, lambda shape: trt_profiler.engine_runner(engine, shape), input_shape,
        sorted(set(profile)) if profile else [input_shape[0]], precision=precision, tolerance=tolerance, seed=seed,
        what=f"{out}: TensorRT"), out)
    write_bytes(out, engine)
    return ExportResult(out, "tensorrt", precision, tuple(input_shape), dynamic_batch, weights, checks,
                        f"TensorRT {trt_profiler.backend_version()} on {trt_profiler.device_name()} (strongly typed, TF32 off)", {},
                        len(engine), batch_profile=profile)


def _tensorrt_call(call: Any, out: Path) -> Any:
    """A TensorRT step whose failure, of whatever type, becomes one line naming the output."""
    from densenas.profilers.errors import ProfilerError

    try:
        return call()
    except (ProfilerError, DensenasError):
        raise
    except Exception as exc:  # the bindings raise RuntimeError, TypeError... with TensorRT's text
        detail = " ".join(str(exc).split())
        raise ProfilerError(f"tensorrt: {out}: {type(exc).__name__}: {detail}") from exc


# -- from an arch.json --------------------------------------------------------------------


def check_format(fmt: str, precision: str, *, batch: int = 1, dynamic_batch: bool = False,
                 max_batch: int | None = None) -> Profiler:
    """Refuse an unknown format or precision, batch options that do not fit together, or
    TensorRT where it cannot run (one line: ProfilerUnavailable), before any work is done.
    Returns the profiler the export is checked with (``parity_profiler``)."""
    if fmt not in FORMATS:
        raise DensenasError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    _check_precision(precision)
    if max_batch is not None and fmt != "tensorrt":
        raise DensenasError("--max-batch is for --format tensorrt (an ONNX file's dynamic batch has no maximum)")
    batch_profile(batch, dynamic_batch, max_batch)
    return parity_profiler(fmt, precision)


def export_arch(
    arch: Arch,
    out: str | Path,
    *,
    fmt: str = "onnx",
    weights: str | Path | None = None,
    precision: str = "fp32",
    batch: int = 1,
    dynamic_batch: bool = False,
    max_batch: int | None = None,
    tolerance: float | None = None,
    seed: int = 0,
    profiler: Profiler | None = None,
) -> ExportResult:
    """``densenas export``: the derived network of ``arch`` to ``out`` in ``fmt``.
    ``profiler`` is what ``check_format`` returned for these options, where the caller
    checked them first (the CLI does, before it prints anything); else they are checked here."""
    if profiler is None:
        profiler = check_format(fmt, precision, batch=batch, dynamic_batch=dynamic_batch, max_batch=max_batch)
    if batch < 1:
        raise DensenasError(f"--batch must be a positive integer, got {batch}")
    if tolerance is not None and tolerance < 0:
        raise DensenasError(f"--tolerance must be >= 0, got {tolerance}")
    module, source = build_model(arch, weights, seed=seed)
    shape = (batch, 3, arch.input_size, arch.input_size)
    kwargs = dict(precision=precision, dynamic_batch=dynamic_batch, tolerance=tolerance, weights=source, seed=seed,
                  profiler=profiler)
    if fmt == "onnx":
        return export_onnx_model(module, shape, out, **kwargs)
    return export_tensorrt_engine(module, shape, out, max_batch=max_batch, **kwargs)
