"""Candidate ops as torch modules, built from a decoded OpSpec.

Faithful to the paper's operations: MBConv (expand 1x1, depthwise kxk, project 1x1,
BN, ReLU6, residual when shapes match), BasicBlock, Bottleneck, Skip (1x1 conv + BN
when widths differ), the final 1x1 conv, the stems and the classifier.
"""

from __future__ import annotations

import torch
from torch import nn

from densenas.errors import DensenasError
from densenas.signature import OpSignature, OpSpec, parse_op


def _bn(ch: int, affine: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, affine=affine, track_running_stats=True)


class MBConv(nn.Module):
    """Inverted residual; the residual is added when input and output shapes match."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, *, affine: bool = True):
        super().__init__()
        mid = c_in * expand
        self.expand = (
            nn.Sequential(nn.Conv2d(c_in, mid, 1, bias=False), _bn(mid, affine), nn.ReLU6(inplace=True))
            if expand > 1
            else None
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
            _bn(mid, affine),
            nn.ReLU6(inplace=True),
        )
        self.project = nn.Sequential(nn.Conv2d(mid, c_out, 1, bias=False), _bn(c_out, affine))
        self.use_residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return y + x if self.use_residual else y


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs); a 1x1 projection when stride or width changes."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, affine: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = _bn(c_out, affine)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = _bn(c_out, affine)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _bn(c_out, affine))
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.downsample(x) if self.downsample is not None else x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet bottleneck as the paper builds it: widths name the planes, tensors carry
    4x planes (except a 32-wide stem output)."""

    expansion = 4

    def __init__(self, c_in: int, c_out: int, stride: int, *, affine: bool = True):
        super().__init__()
        inplanes = bottleneck_in_channels(c_in)
        out = c_out * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(inplanes, c_out, 1, bias=False), _bn(c_out, affine), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, stride, 1, bias=False), _bn(c_out, affine), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, out, 1, bias=False), _bn(out, affine),
        )
        self.downsample = (
            nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), _bn(out, affine))
            if stride != 1 or inplanes != out
            else None
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu(self.body(x) + identity)


def bottleneck_in_channels(c_in: int) -> int:
    return c_in if c_in == 32 else c_in * Bottleneck.expansion


class Skip(nn.Module):
    """Identity, or a 1x1 conv + BN when the widths differ (a skipped layer)."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, affine: bool = True):
        super().__init__()
        self.proj = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _bn(c_out, affine))
            if c_in != c_out or stride != 1
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) if self.proj is not None else x


class ConvBNAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, act: type[nn.Module], *, affine: bool = True):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
            _bn(c_out, affine),
            act(inplace=True),
        )


class Classifier(nn.Module):
    """Global average pooling and the linear layer."""

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


def build_op(op: str | OpSpec, c_in: int, c_out: int, stride: int, *, affine: bool = True) -> nn.Module:
    """The one place an op name becomes a module."""
    spec = parse_op(op) if isinstance(op, str) else op
    if stride not in (1, 2):
        raise DensenasError(f"op {spec.name}: stride must be 1 or 2, got {stride}")
    if spec.kind == "mbconv":
        return MBConv(c_in, c_out, spec.kernel, stride, spec.expand, affine=affine)
    if spec.kind == "basic_block":
        return BasicBlock(c_in, c_out, stride, affine=affine)
    if spec.kind == "bottle_neck":
        return Bottleneck(c_in, c_out, stride, affine=affine)
    if spec.kind == "skip_connect":
        return Skip(c_in, c_out, stride, affine=affine)
    if spec.kind == "conv1_1":
        return ConvBNAct(c_in, c_out, 1, stride, nn.ReLU6, affine=affine)
    if spec.kind == "stem_relu6":
        return ConvBNAct(c_in, c_out, 3, stride, nn.ReLU6, affine=affine)
    if spec.kind == "stem_relu":
        return ConvBNAct(c_in, c_out, 3, stride, nn.ReLU, affine=affine)
    if spec.kind == "classifier":
        return Classifier(c_in, c_out)
    raise DensenasError(f"no builder for op {spec.name!r}")


def module_for_signature(sig: OpSignature) -> nn.Module:
    """The module a profiler times for one LUT row (inference form: affine BN)."""
    return build_op(sig.op, sig.c_in, sig.c_out, sig.stride).eval()


def input_shape_for_signature(sig: OpSignature) -> tuple[int, int, int, int]:
    c = bottleneck_in_channels(sig.c_in) if sig.op == "bottle_neck" else sig.c_in
    return (sig.batch, c, sig.h, sig.w)
