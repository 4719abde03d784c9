"""Every candidate op at both strides: output shapes, residuals, op-name parsing."""

import pytest
import torch

from densenas.errors import DensenasError
from densenas.ops import MBConv, build_op, input_shape_for_signature
from densenas.signature import OpSignature, OpSpec, known_ops

SEARCHABLE = [op for op in known_ops() if op not in ("classifier",)]


@pytest.mark.parametrize("op", SEARCHABLE)
@pytest.mark.parametrize("stride", [1, 2])
def test_op_output_shape(op, stride):
    sig = OpSignature(op, 16, 24, stride, 8, 8, batch=2)
    m = build_op(op, 16, 24, stride).eval()
    y = m(torch.randn(input_shape_for_signature(sig)))
    c_out = 24 * 4 if op == "bottle_neck" else 24
    assert tuple(y.shape) == (2, c_out, 8 // stride, 8 // stride)


def test_classifier_shape():
    assert build_op("classifier", 32, 10, 1)(torch.randn(3, 32, 4, 4)).shape == (3, 10)


def test_skip_is_identity_when_widths_match():
    m = build_op("skip_connect", 8, 8, 1)
    x = torch.randn(1, 8, 4, 4)
    assert torch.equal(m(x), x) and sum(p.numel() for p in m.parameters()) == 0


def test_mbconv_residual_only_when_shapes_match():
    assert MBConv(8, 8, 3, 1, 3).use_residual
    assert not MBConv(8, 8, 3, 2, 3).use_residual
    assert not MBConv(8, 16, 3, 1, 3).use_residual


def test_mbconv_structure_t1_has_no_expansion():
    m = build_op("mbconv_k5_t1", 8, 8, 1)
    assert m.expand is None and m.depthwise[0].kernel_size == (5, 5)
    m = build_op("mbconv_k7_t6", 8, 8, 1)
    assert m.expand[0].out_channels == 48 and m.depthwise[0].groups == 48


@pytest.mark.parametrize("name", ["mbconv_k4_t6", "mbconv_k3_t2", "conv3x3", "", "MBCONV_K3_T3"])
def test_unknown_op_names(name):
    with pytest.raises(DensenasError, match="unknown op"):
        OpSpec(name)


def test_signature_key_is_stable_and_complete():
    sig = OpSignature("mbconv_k3_t3", 16, 24, 2, 112, 112, 32, "fp16")
    assert sig.key() == "mbconv_k3_t3|16|24|2|112x112|b32|fp16"
    assert OpSignature.from_dict(sig.to_dict()) == sig
