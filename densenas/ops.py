"""Candidate ops as torch modules, built from a decoded OpSpec.

Faithful to the paper's operations: MBConv (expand 1x1, depthwise kxk, project 1x1,
BN, ReLU6, residual when shapes match), BasicBlock, Bottleneck, Skip (1x1 conv + BN
when widths differ), the final 1x1 conv, the stems and the classifier.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from densenas.errors import DensenasError
from densenas.signature import OpSignature, OpSpec


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


class SharedMBConv(nn.Module):
    """The MBConv candidates of one mixed op as slices of one largest kernel (the weight
    sharing of Single-Path NAS and once-for-all): candidate ``mbconv_k{k}_t{t}`` uses the
    first ``t * c_in`` expanded channels and the centre ``k x k`` of the depthwise kernel.
    Each candidate keeps its own batch norms: the statistics of a 3-channel-expanded slice
    are not those of a 6-channel one.

    Sharing is what lets a briefly trained supernet learn under path sampling: with
    independent weights every step shows the next layer a different feature basis.
    """

    def __init__(self, specs: list[OpSpec], c_in: int, c_out: int, stride: int, *, affine: bool = True):
        super().__init__()
        if not specs or not all(s.mbconv for s in specs):
            raise DensenasError(f"shared weights need MBConv candidates, got {[s.name for s in specs]}")
        self.specs = list(specs)
        self.c_in, self.c_out, self.stride = c_in, c_out, stride
        mid = c_in * max(s.expand for s in specs)
        kernel = max(s.kernel for s in specs)
        self.kernel = kernel
        # full-size convs hold the shared weights (and get the usual initialisation);
        # forward slices their ``weight`` tensors
        self.expand = nn.Conv2d(c_in, mid, 1, bias=False) if any(s.expand > 1 for s in specs) else None
        self.depthwise = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self.project = nn.Conv2d(mid, c_out, 1, bias=False)
        self.norms = nn.ModuleList(
            nn.ModuleList([_bn(c_in * s.expand, affine), _bn(c_in * s.expand, affine), _bn(c_out, affine)])
            for s in specs
        )
        self.use_residual = stride == 1 and c_in == c_out

    def _weights(self, i: int) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        spec = self.specs[i]
        mid = self.c_in * spec.expand
        off = (self.kernel - spec.kernel) // 2
        expand = self.expand.weight[:mid] if spec.expand > 1 and self.expand is not None else None
        depthwise = self.depthwise.weight[:mid, :, off:off + spec.kernel, off:off + spec.kernel]
        return expand, depthwise, self.project.weight[:, :mid]

    def run(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Candidate ``i`` on ``x``."""
        spec = self.specs[i]
        expand, depthwise, project = self._weights(i)
        bn_e, bn_d, bn_p = self.norms[i]
        y = F.relu6(bn_e(F.conv2d(x, expand))) if expand is not None else x
        y = F.relu6(bn_d(F.conv2d(y, depthwise, None, self.stride, spec.kernel // 2, 1, depthwise.shape[0])))
        y = bn_p(F.conv2d(y, project))
        return y + x if self.use_residual else y

    def standalone(self, i: int) -> MBConv:
        """Candidate ``i`` as a plain ``MBConv`` holding copies of its slices and batch norms
        (what a derived network inherits)."""
        spec = self.specs[i]
        bn_e, bn_d, bn_p = self.norms[i]
        m = MBConv(self.c_in, self.c_out, spec.kernel, self.stride, spec.expand, affine=bn_p.affine)
        expand, depthwise, project = self._weights(i)
        with torch.no_grad():
            if m.expand is not None:
                m.expand[0].weight.copy_(expand)
                m.expand[1].load_state_dict(bn_e.state_dict())
            m.depthwise[0].weight.copy_(depthwise)
            m.depthwise[1].load_state_dict(bn_d.state_dict())
            m.project[0].weight.copy_(project)
            m.project[1].load_state_dict(bn_p.state_dict())
        m.train(self.training)
        return m


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


# The op table: per kind, its builder (spec, c_in, c_out, stride, affine) and the width
# of the tensor it takes for a signature's c_in (a bottleneck's widths name planes).
_OPS: dict[str, tuple[Callable[..., nn.Module], Callable[[int], int]]] = {
    "mbconv": (lambda s, i, o, st, a: MBConv(i, o, s.kernel, st, s.expand, affine=a), int),
    "basic_block": (lambda s, i, o, st, a: BasicBlock(i, o, st, affine=a), int),
    "bottle_neck": (lambda s, i, o, st, a: Bottleneck(i, o, st, affine=a), bottleneck_in_channels),
    "skip_connect": (lambda s, i, o, st, a: Skip(i, o, st, affine=a), int),
    "conv1_1": (lambda s, i, o, st, a: ConvBNAct(i, o, 1, st, nn.ReLU6, affine=a), int),
    "stem_relu6": (lambda s, i, o, st, a: ConvBNAct(i, o, 3, st, nn.ReLU6, affine=a), int),
    "stem_relu": (lambda s, i, o, st, a: ConvBNAct(i, o, 3, st, nn.ReLU, affine=a), int),
    "classifier": (lambda s, i, o, st, a: Classifier(i, o), int),
}


def build_op(op: OpSpec, c_in: int, c_out: int, stride: int, *, affine: bool = True) -> nn.Module:
    """The one place an op becomes a module."""
    spec = OpSpec(op)
    if stride not in (1, 2):
        raise DensenasError(f"op {spec.name}: stride must be 1 or 2, got {stride}")
    return _OPS[spec.kind][0](spec, c_in, c_out, stride, affine)


def build_layer(sig: OpSignature, *, affine: bool = True) -> nn.Module:
    """One layer of a plan (``Arch.layers``, a space's signatures) as a module."""
    return build_op(sig.op, sig.c_in, sig.c_out, sig.stride, affine=affine)


def build_layers(signatures: list[OpSignature], *, affine: bool = True) -> nn.Sequential:
    """Consecutive layers of a plan as one module."""
    return nn.Sequential(*(build_layer(s, affine=affine) for s in signatures))


def module_for_signature(sig: OpSignature) -> nn.Module:
    """The module a profiler times for one LUT row (inference form: affine BN)."""
    return build_layer(sig).eval()


def input_shape_for_signature(sig: OpSignature) -> tuple[int, int, int, int]:
    return (sig.batch, _OPS[sig.op.kind][1](sig.c_in), sig.h, sig.w)
