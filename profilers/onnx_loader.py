"""ONNX export of a torch module, as small composable loaders (Polygraphy style).

``profile``, ``bench`` and ``export`` all go through here, so the graph a backend times
and the graph a user ships are made the same way: eval mode, constant folding on (so
BatchNorm folds into the convolution), fixed names ``input`` / ``output``.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import io
import itertools
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from densenas.profilers.errors import ProfilerError

if TYPE_CHECKING:
    import torch
    from torch import nn

INPUT_NAME = "input"
OUTPUT_NAME = "output"
DEFAULT_OPSET = 17

Exporter = Literal["auto", "torchscript", "dynamo"]


def _torchscript_exporter_available() -> bool:
    """True while torch.onnx.export still takes the legacy TorchScript path (``dynamo=False``).

    That path is preferred: it is about 40x faster per op than the dynamo exporter and
    its output is deterministic. It is deprecated since torch 2.9, so fall back cleanly.
    """
    import torch

    params = inspect.signature(torch.onnx.export).parameters
    return "dynamo" in params and "do_constant_folding" in params


def _export_to_bytes(
    module: nn.Module,
    example: torch.Tensor,
    *,
    dynamic_batch: bool,
    opset: int,
    exporter: Exporter,
) -> bytes:
    import torch

    use_torchscript = exporter == "torchscript" or (exporter == "auto" and _torchscript_exporter_available())
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter's notice
        if use_torchscript:
            torch.onnx.export(
                module,
                (example,),
                buffer,  # type: ignore[arg-type]  # the legacy exporter writes to file objects too
                dynamo=False,
                opset_version=opset,
                do_constant_folding=True,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None,
            )
            return buffer.getvalue()
        dynamic_shapes = None
        if dynamic_batch:
            # torch.export specialises sizes 0 and 1, so trace a dynamic batch at 2
            if example.shape[0] == 1:
                example = torch.cat([example, example])
            dynamic_shapes = ({0: torch.export.Dim("batch")},)
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            opset_version=max(opset, 18),  # the dynamo exporter's lowest implemented opset
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes,
            optimize=True,
            verbose=False,
        )
        if program is None:
            raise ProfilerError("torch.onnx.export (dynamo) returned no program")
        return program.model_proto.SerializeToString()


class OnnxFromModule:
    """Loader: a torch module at an input shape -> ONNX model bytes, checked by ``onnx.checker``.

    The caller's module is left as it was (training flag, dtype, device); fp16 exports a
    half-precision copy.
    """

    def __init__(
        self,
        module: nn.Module,
        input_shape: Sequence[int],
        *,
        dynamic_batch: bool = False,
        opset: int = DEFAULT_OPSET,
        precision: str = "fp32",
        device: str | torch.device | None = None,
        exporter: Exporter = "auto",
    ) -> None:
        if precision not in ("fp32", "fp16"):
            raise ProfilerError(f"ONNX export: precision must be fp32 or fp16, got {precision!r}")
        if exporter not in ("auto", "torchscript", "dynamo"):
            raise ProfilerError(f"ONNX export: exporter must be auto, torchscript or dynamo, got {exporter!r}")
        self.module = module
        self.input_shape = tuple(int(d) for d in input_shape)
        self.dynamic_batch = dynamic_batch
        self.opset = opset
        self.precision = precision
        self.device = device
        self.exporter: Exporter = exporter

    def __call__(self) -> bytes:
        import onnx
        import torch

        was_training = self.module.training
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        device = torch.device(self.device) if self.device is not None else _module_device(self.module)
        module = self.module
        if self.precision == "fp16" or self.device is not None:
            module = copy.deepcopy(module).to(device=device, dtype=dtype)
        example = torch.randn(self.input_shape, generator=torch.Generator().manual_seed(0)).to(device, dtype)
        try:
            module.eval()
            data = _export_to_bytes(
                module, example, dynamic_batch=self.dynamic_batch, opset=self.opset, exporter=self.exporter
            )
        except ProfilerError:
            raise
        except Exception as exc:
            raise ProfilerError(
                f"ONNX export of {type(self.module).__name__} at input shape {self.input_shape} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self.module.train(was_training)
        try:
            onnx.checker.check_model(data)
        except onnx.checker.ValidationError as exc:
            name = type(self.module).__name__
            raise ProfilerError(f"ONNX export of {name} produced an invalid model: {exc}") from exc
        return data


def _module_device(module: nn.Module) -> torch.device:
    import torch

    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")


def onnx_structure_hash(onnx_bytes: bytes) -> str:
    """SHA-256 of a model's graph with initializer values and producer stamps removed.

    Two exports of the same op at the same shape hash alike whatever their weights or
    the torch version that wrote them: the right key for caching what depends only on
    structure (a TensorRT engine built for timing).
    """
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    for tensor in model.graph.initializer:
        for name in ("raw_data", "float_data", "int32_data", "int64_data", "double_data", "uint64_data", "string_data"):
            tensor.ClearField(name)
    for name in ("producer_name", "producer_version", "doc_string"):
        model.ClearField(name)
    return hashlib.sha256(model.SerializeToString(deterministic=True)).hexdigest()
