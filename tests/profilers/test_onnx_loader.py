"""ONNX export shared by profile, bench and export."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from densenas.profilers.errors import ProfilerError
from densenas.profilers.onnx_loader import INPUT_NAME, OUTPUT_NAME, OnnxFromModule, onnx_structure_hash

SHAPE = (1, 8, 16, 16)


def mbconv_like() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(8, 24, 1, bias=False),
        nn.BatchNorm2d(24),
        nn.ReLU6(),
        nn.Conv2d(24, 24, 3, padding=1, groups=24, bias=False),
        nn.BatchNorm2d(24),
        nn.ReLU6(),
        nn.Conv2d(24, 16, 1, bias=False),
        nn.BatchNorm2d(16),
    )


def _randomise_bn(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return module


def _ort_run(data: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {INPUT_NAME: x})[0]


def test_export_round_trips_in_onnxruntime() -> None:
    torch.manual_seed(0)
    module = _randomise_bn(mbconv_like()).train()
    data = OnnxFromModule(module, SHAPE)()
    assert module.training  # the caller's module is left in train mode
    x = torch.randn(SHAPE)
    with torch.no_grad():
        expected = module.eval()(x).numpy()
    np.testing.assert_allclose(_ort_run(data, x.numpy()), expected, rtol=1e-4, atol=1e-5)


def test_batchnorm_is_folded_and_names_are_fixed() -> None:
    model = onnx.load_from_string(OnnxFromModule(mbconv_like(), SHAPE)())
    ops = [node.op_type for node in model.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Conv") == 3
    assert [i.name for i in model.graph.input] == [INPUT_NAME]
    assert [o.name for o in model.graph.output] == [OUTPUT_NAME]


def test_dynamic_batch_runs_at_another_batch() -> None:
    module = mbconv_like().eval()
    data = OnnxFromModule(module, SHAPE, dynamic_batch=True)()
    x = torch.randn(3, *SHAPE[1:])
    with torch.no_grad():
        expected = module(x).numpy()
    np.testing.assert_allclose(_ort_run(data, x.numpy()), expected, rtol=1e-4, atol=1e-5)


def test_loader_returns_checked_onnx_bytes() -> None:
    data = OnnxFromModule(nn.ReLU(), (1, 2))()
    assert isinstance(data, bytes)
    onnx.checker.check_model(onnx.load_from_string(data))


def test_fp16_export_leaves_the_module_in_fp32() -> None:
    module = mbconv_like()
    model = onnx.load_from_string(OnnxFromModule(module, SHAPE, precision="fp16")())
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    assert next(module.parameters()).dtype == torch.float32


def test_structure_hash_ignores_weights_but_not_shapes() -> None:
    a = OnnxFromModule(mbconv_like(), SHAPE)()
    b = OnnxFromModule(mbconv_like(), SHAPE)()  # other random weights
    c = OnnxFromModule(mbconv_like(), (1, 8, 32, 32))()
    assert a != b
    assert onnx_structure_hash(a) == onnx_structure_hash(b) != onnx_structure_hash(c)


def test_a_module_that_cannot_run_at_the_shape_is_a_profiler_error() -> None:
    with pytest.raises(ProfilerError, match=r"Sequential at input shape \(1, 3, 16, 16\)"):
        OnnxFromModule(mbconv_like(), (1, 3, 16, 16))()
