"""densenas export: every op exports to a checked ONNX graph with BN folded that matches
PyTorch; parity failures, TensorRT without a GPU and bad weights are one line, exit 2."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from densenas.arch import Arch, ArchBlock, load_arch
from densenas.errors import DensenasError
from densenas.export import FP32_TOLERANCE, build_model, export_arch, export_onnx_model
from densenas.nets.derived import DerivedNet
from densenas.ops import build_op
from densenas.space import SearchSpace
from densenas.lut.networks import random_arch

MBCONVS = [f"mbconv_k{k}_t{t}" for k in (3, 5, 7) for t in (1, 3, 6)]

RESNET_YAML = """
name: resnet-micro
input_size: 16
num_classes: 10
stem: resnet
init_dim: 16
last_dim: 32
final_conv_in_derived: false
primitives:
  head: [basic_block]
  stack: [basic_block, skip_connect]
adjoin_connect_nums: [2, 2, 2, 2]
blocks:
  ch: [16, 16, 24, 32]
  fm: [8, 8, 4, 4]
  stage: [0, 1, 2, 2, 3]
  num_layers: [0, 1, 1, 1]
"""


def _mbv2_arch(head_ops: list[str], stack_ops: list[str]) -> Arch:
    """A small MBV2-stem network whose blocks use the given ops, with stride 1 and 2,
    width changes (no residual) and equal widths (residual), and a final 1x1 conv."""
    widths = [12, 12, 16, 16, 24]
    blocks, prev = [], 8
    for i, head in enumerate(head_ops):
        out = widths[i % len(widths)]
        stride = 2 if i in (1, 3) else 1
        blocks.append(ArchBlock(prev, out, stride, head, tuple(stack_ops[2 * i: 2 * i + 2])))
        prev = out
    return Arch("mbv2-micro", 16, 10, "mbv2", 8, 8, tuple(blocks), (prev, 32)).validate()


def _bn_nodes(path: Path) -> int:
    return sum(n.op_type == "BatchNormalization" for n in onnx.load(str(path)).graph.node)


def _ort_run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "densenas", *args], capture_output=True, text=True, timeout=180)


@pytest.mark.parametrize(
    "heads,stacks",
    [
        (MBCONVS[:5], MBCONVS[4:] + ["skip_connect", "mbconv_k3_t3"]),  # all nine mbconvs, an identity skip
        (["skip_connect", "mbconv_k7_t6", "skip_connect"], ["mbconv_k5_t1"]),  # skip as a 1x1 conv + BN head
    ],
    ids=["mbconv-all", "skip-heads"],
)
def test_mbv2_ops_export_checked_fused_and_match_pytorch(tmp_path, heads, stacks):
    arch = _mbv2_arch(heads, stacks)
    result = export_arch(arch, tmp_path / "net.onnx")
    onnx.checker.check_model(onnx.load(str(tmp_path / "net.onnx")), full_check=True)
    assert _bn_nodes(tmp_path / "net.onnx") == 0
    assert result.to_dict()["batchnorm_nodes"] == 0
    assert result.max_abs_diff <= FP32_TOLERANCE
    # the file on disk, run independently, computes what the PyTorch model does
    net, _ = build_model(arch)
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = net(x).numpy()
    assert np.abs(_ort_run(tmp_path / "net.onnx", x.numpy()) - ref).max() <= FP32_TOLERANCE


def test_resnet_space_basic_block_export_with_dynamic_batch(tmp_path):
    yaml_path = tmp_path / "resnet-micro.yaml"
    yaml_path.write_text(RESNET_YAML)
    space = SearchSpace.load(str(yaml_path))
    arch = random_arch(space, random.Random(1))
    assert arch.final_conv is None and {b.head_op for b in arch.blocks} == {"basic_block"}
    result = export_arch(arch, tmp_path / "res.onnx", dynamic_batch=True)
    assert [c.batch for c in result.checks] == [1, 3]
    assert all(c.max_abs_diff <= FP32_TOLERANCE for c in result.checks)
    model = onnx.load(str(tmp_path / "res.onnx"))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch
    assert _bn_nodes(tmp_path / "res.onnx") == 0
    assert _ort_run(tmp_path / "res.onnx", np.zeros((5, 3, 16, 16), np.float32)).shape == (5, 10)


@pytest.mark.parametrize("op,c_in,c_out,stride,in_channels", [
    ("bottle_neck", 8, 8, 2, 32),  # tensors carry 4x the named width
    ("basic_block", 8, 16, 2, 8),
    ("conv1_1", 8, 24, 1, 8),
    ("skip_connect", 8, 16, 1, 8),
])
def test_single_ops_export_at_batch_1_and_3(tmp_path, op, c_in, c_out, stride, in_channels):
    module = build_op(op, c_in, c_out, stride).eval()
    result = export_onnx_model(module, (1, in_channels, 8, 8), tmp_path / f"{op}.onnx", dynamic_batch=True)
    assert [c.batch for c in result.checks] == [1, 3]
    assert result.max_abs_diff <= FP32_TOLERANCE
    assert _bn_nodes(tmp_path / f"{op}.onnx") == 0


def test_fp16_export_uses_half_io_and_the_looser_tolerance(tmp_path):
    arch = _mbv2_arch(["mbconv_k3_t6", "mbconv_k5_t3"], ["mbconv_k3_t3"])
    result = export_arch(arch, tmp_path / "half.onnx", precision="fp16")
    model = onnx.load(str(tmp_path / "half.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    (check,) = result.checks
    assert FP32_TOLERANCE < check.tolerance and check.max_abs_diff <= check.tolerance
    assert _bn_nodes(tmp_path / "half.onnx") == 0


def test_trained_weights_are_what_gets_exported(tmp_path):
    """A ``densenas train`` weights record and a bare state_dict both load; the exported
    graph computes the trained network, not a freshly initialised one."""
    arch = _mbv2_arch(["mbconv_k3_t3", "mbconv_k5_t6"], ["mbconv_k3_t6"])
    torch.manual_seed(123)
    trained = DerivedNet(arch).eval()
    for p in trained.parameters():
        p.data.add_(0.05)
    record = {"schema": "densenas.weights/1", "state_dict": trained.state_dict(), "arch": arch.to_dict(),
              "num_classes": arch.num_classes, "epoch": 3}
    torch.save(record, tmp_path / "weights.pt")
    torch.save(trained.state_dict(), tmp_path / "bare.pt")
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = trained(x).numpy()
    for name in ("weights.pt", "bare.pt"):
        result = export_arch(arch, tmp_path / f"{name}.onnx", weights=tmp_path / name)
        assert name in result.weights
        assert np.abs(_ort_run(tmp_path / f"{name}.onnx", x.numpy()) - ref).max() <= FP32_TOLERANCE


def test_weights_of_another_network_are_refused(tmp_path):
    arch = _mbv2_arch(["mbconv_k3_t3"], [])
    other = _mbv2_arch(["mbconv_k5_t6"], [])
    torch.save(DerivedNet(other).state_dict(), tmp_path / "other.pt")
    with pytest.raises(DensenasError, match="do not fit this architecture"):
        export_arch(arch, tmp_path / "x.onnx", weights=tmp_path / "other.pt")
    torch.save({"schema": "densenas.search_checkpoint/1", "supernet": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(DensenasError, match="field model: expected the supernet's state_dict"):
        export_arch(arch, tmp_path / "x.onnx", weights=tmp_path / "checkpoint.pt")
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_json_and_random_weights_warning(tmp_path):
    arch = _mbv2_arch(["mbconv_k3_t3", "mbconv_k5_t6"], ["mbconv_k7_t3"])
    arch.save(tmp_path / "arch.json")
    r = _cli("export", "--arch", str(tmp_path / "arch.json"), "--format", "onnx",
             "--out", str(tmp_path / "net.onnx"), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["format"] == "onnx" and d["batchnorm_nodes"] == 0 and d["max_abs_diff"] <= 1e-4
    assert [p["batch"] for p in d["parity"]] == [1]
    assert "random weights" in r.stderr
    assert load_arch(tmp_path / "arch.json") == arch
    assert (tmp_path / "net.onnx").stat().st_size == d["size_bytes"]


def test_cli_parity_failure_is_one_line_exit_2_and_writes_nothing(tmp_path):
    _mbv2_arch(["mbconv_k3_t3"], []).save(tmp_path / "arch.json")
    r = _cli("export", "--arch", str(tmp_path / "arch.json"), "--out", str(tmp_path / "net.onnx"),
             "--tolerance", "0")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "differs from PyTorch" in lines[-1]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "net.onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".net.onnx")]  # no temp file left


def test_cli_tensorrt_without_gpu_is_one_line_exit_2(tmp_path):
    from densenas.profilers.tensorrt_backend import TensorRTProfiler

    ok, _ = TensorRTProfiler.available()
    if ok:
        pytest.skip("TensorRT and a GPU are available here; the unavailable path cannot be exercised")
    _mbv2_arch(["mbconv_k3_t3"], []).save(tmp_path / "arch.json")
    r = _cli("export", "--arch", str(tmp_path / "arch.json"), "--format", "tensorrt",
             "--out", str(tmp_path / "net.engine"))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: tensorrt:")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "net.engine").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with TensorRT")
def test_tensorrt_engine_matches_pytorch_on_gpu(tmp_path):
    pytest.importorskip("tensorrt")
    arch = _mbv2_arch(["mbconv_k3_t3", "mbconv_k5_t6"], ["mbconv_k3_t6"])
    for precision in ("fp32", "fp16"):
        result = export_arch(arch, tmp_path / f"{precision}.engine", fmt="tensorrt", precision=precision,
                             dynamic_batch=True, max_batch=3)
        assert [c.batch for c in result.checks] == [1, 3]
        assert all(c.ok for c in result.checks)
        assert (tmp_path / f"{precision}.engine").stat().st_size > 0


def _searched_supernet(space: SearchSpace, tmp_path: Path, *, skip_first_layer: bool) -> tuple[object, Path]:
    """A supernet with random weights, BN statistics and architecture parameters, saved
    as a search checkpoint is."""
    from densenas.nets.supernet import SuperNet
    from densenas.search.checkpoint import save_checkpoint

    torch.manual_seed(3)
    net = SuperNet(space)
    with torch.no_grad():
        for name, t in net.state_dict().items():  # the weights are He-initialised already
            if "running_mean" in name:
                t.copy_(0.1 * torch.randn_like(t))
            elif "running_var" in name:
                t.copy_(torch.rand_like(t) + 0.5)
        if skip_first_layer:
            skip = space.stack_primitives.index("skip_connect")
            for alphas in net.stack_alphas:
                if alphas.shape[0] >= 2:
                    alphas[0, skip] = 100.0  # the first of two layers is dropped, the second kept
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"epoch": 2, "settings": {"space": space.name}, "model": net.state_dict()})
    return net, path


def test_a_search_checkpoint_gives_the_derived_path_its_supernet_weights(tmp_path):
    from densenas.arch_params import ArchParams
    from densenas.derive import derive_viterbi

    space = SearchSpace.load("mbv2-tiny")
    supernet, ckpt = _searched_supernet(space, tmp_path, skip_first_layer=True)
    arch = derive_viterbi(space, ArchParams.from_supernet(supernet))
    net, description = build_model(arch, weights=ckpt)
    assert "search checkpoint, epoch 2" in description and "inherited from the supernet" in description
    assert "not the searched ones" not in description
    state = net.state_dict()
    # every derived head and stack op holds exactly its candidate's tensors
    skipped_somewhere = False
    src = 0
    prims = space.stack_primitives
    for k, block in enumerate(arch.blocks):
        dst = block.block_id
        head = supernet.heads[dst - 1][space.branch_index(dst, src)].candidate(space.head_primitives.index(block.head_op))
        for name, t in head.state_dict().items():
            assert torch.equal(state[f"blocks.{k}.head.{name}"], t), (k, name)
        alphas = supernet.stack_alphas[dst - 1]
        layers = [i for i in range(alphas.shape[0]) if prims[int(alphas[i].argmax())] != "skip_connect"]
        skipped_somewhere |= len(layers) < alphas.shape[0] and bool(layers) and layers != list(range(len(layers)))
        for i, layer in enumerate(layers):
            op = supernet.stacks[dst - 1][layer].candidate(int(alphas[layer].argmax()))
            for name, t in op.state_dict().items():
                assert torch.equal(state[f"blocks.{k}.stack.{i}.{name}"], t), (k, i, name)
        src = dst
    assert skipped_somewhere  # the layer mapping was exercised past a dropped layer
    for name, t in supernet.classifier.state_dict().items():
        assert torch.equal(state[f"classifier.{name}"], t)
    for name, t in supernet.final[space.final.in_edges.index(src)].state_dict().items():
        assert torch.equal(state[f"final_conv.{name}"], t)
    # the supernet's affine-free batch norms become identity affines, statistics kept
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and all(torch.equal(m.weight, torch.ones_like(m.weight)) and not m.bias.any() for m in norms)
    # and the export of it passes the checker and parity
    result = export_arch(arch, tmp_path / "inherited.onnx", weights=ckpt)
    assert all(c.ok for c in result.checks) and "inherited from the supernet" in result.weights


def test_an_edited_arch_takes_the_first_layers_and_says_so(tmp_path):
    import dataclasses

    from densenas.arch_params import ArchParams
    from densenas.derive import derive_viterbi

    space = SearchSpace.load("mbv2-tiny")
    supernet, ckpt = _searched_supernet(space, tmp_path, skip_first_layer=False)
    arch = derive_viterbi(space, ArchParams.from_supernet(supernet))
    k = next(i for i, b in enumerate(arch.blocks) if b.stack_ops)
    other = next(op for op in MBCONVS if op in space.stack_primitives and op != arch.blocks[k].stack_ops[0])
    edited = dataclasses.replace(arch, blocks=tuple(
        dataclasses.replace(b, stack_ops=(other,)) if i == k else b for i, b in enumerate(arch.blocks)))
    net, description = build_model(edited, weights=ckpt)
    assert f"block {k}: its stacked ops are not the searched ones" in description
    dst = edited.blocks[k].block_id
    want = supernet.stacks[dst - 1][0].candidate(space.stack_primitives.index(other)).state_dict()
    for name, t in want.items():
        assert torch.equal(net.state_dict()[f"blocks.{k}.stack.0.{name}"], t)


def test_a_search_checkpoint_of_another_space_is_refused(tmp_path):
    space = SearchSpace.load("mbv2-tiny")
    _, ckpt = _searched_supernet(space, tmp_path, skip_first_layer=False)
    arch = _mbv2_arch(["mbconv_k3_t3"], [])
    with pytest.raises(DensenasError, match="searched space mbv2-tiny"):
        build_model(arch, weights=ckpt)
