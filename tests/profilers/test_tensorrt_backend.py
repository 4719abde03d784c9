"""TensorRT backend, the parts that need no GPU: cache keys and paths, availability, and
that importing the module never imports tensorrt."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from torch import nn

from densenas.profilers.errors import ProfilerError
from densenas.profilers.onnx_loader import OnnxFromModule
from densenas.profilers.tensorrt_backend import (
    INSTALL_HINT,
    BuildSettings,
    EngineCache,
    TensorRTProfiler,
    default_cache_dir,
)

ROOT = Path(__file__).resolve().parents[2]


def _onnx(c_out: int, seed: int) -> bytes:
    import torch

    torch.manual_seed(seed)
    return OnnxFromModule(nn.Conv2d(4, c_out, 3), (1, 4, 8, 8))()


def test_engine_key_depends_on_structure_and_precision_not_weights() -> None:
    a, same_shape, other = _onnx(8, 0), _onnx(8, 1), _onnx(16, 0)
    fp32, fp16 = BuildSettings("fp32"), BuildSettings("fp16")
    assert EngineCache.key(a, fp32) == EngineCache.key(same_shape, fp32)
    assert EngineCache.key(a, fp32) != EngineCache.key(other, fp32)
    assert EngineCache.key(a, fp32) != EngineCache.key(a, fp16)
    with pytest.raises(ProfilerError, match="precision"):
        BuildSettings("int8")


@pytest.mark.parametrize(
    "changed",
    [{"tf32": True}, {"workspace_bytes": 1 << 20}, {"optimization_level": 5}],
)
def test_engine_key_changes_with_every_build_setting(changed: dict) -> None:
    onnx = _onnx(8, 0)
    base = EngineCache.key(onnx, BuildSettings())
    assert EngineCache.key(onnx, BuildSettings(**changed)) != base
    shapes = {"input": ((1, 4, 8, 8), (1, 4, 8, 8), (4, 4, 8, 8))}
    assert EngineCache.key(onnx, BuildSettings(), shapes) != base


def test_build_settings_name_the_bad_field() -> None:
    for bad, field in (({"tf32": 1}, "tf32"), ({"workspace_bytes": 0}, "workspace_bytes"),
                       ({"optimization_level": 6}, "optimization_level")):
        with pytest.raises(ProfilerError, match=field):
            BuildSettings(**bad)


def test_old_fingerprints_replay_with_tf32_on() -> None:
    assert TensorRTProfiler.options_from_fingerprint({}) == {"tf32": True}
    recorded = {"tf32": False, "workspace_bytes": 1 << 20, "optimization_level": 3}
    assert TensorRTProfiler.options_from_fingerprint(recorded) == recorded


def test_engine_paths_are_per_tensorrt_version_and_gpu(tmp_path: Path) -> None:
    h100 = EngineCache(tmp_path, trt_version="10.3.0", device="NVIDIA H100 80GB HBM3-sm90")
    newer = EngineCache(tmp_path, trt_version="10.4.0", device="NVIDIA H100 80GB HBM3-sm90")
    key = EngineCache.key(_onnx(8, 0), BuildSettings("fp16"))
    assert h100.engine_path(key).parent == tmp_path / "tensorrt" / "trt-10.3.0" / "nvidia-h100-80gb-hbm3-sm90"
    assert h100.engine_path(key).name == f"{key}.engine" and "-fp16-" in key
    assert h100.engine_path(key) != newer.engine_path(key)
    assert h100.timing_cache_path.parent == h100.folder


def test_engine_store_is_atomic_and_loads_back(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path, trt_version="10.3.0", device="gpu")
    assert cache.load("k-fp32") is None
    cache.store("k-fp32", b"engine-bytes")
    assert cache.load("k-fp32") == b"engine-bytes"
    assert [p.name for p in cache.folder.iterdir()] == ["k-fp32.engine"]  # no temporary left behind
    cache.discard("k-fp32")
    assert cache.load("k-fp32") is None


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "densenas"


def test_workspace_must_be_positive() -> None:
    with pytest.raises(ProfilerError, match="workspace_bytes"):
        TensorRTProfiler(workspace_bytes=0)


def _python(code: str, fake_tensorrt: str | None, tmp_path: Path) -> str:
    paths = [str(ROOT)]
    if fake_tensorrt is not None:
        (tmp_path / "tensorrt.py").write_text(textwrap.dedent(fake_tensorrt))
        paths.insert(0, str(tmp_path))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_backend_does_not_import_tensorrt(tmp_path: Path) -> None:
    out = _python(
        """
        import sys
        import densenas.profilers.tensorrt_backend
        from densenas.profilers import get_profiler_class
        get_profiler_class("tensorrt")
        print("tensorrt" in sys.modules)
        """,
        "raise RuntimeError('tensorrt was imported')\n",
        tmp_path,
    )
    assert out == "False"


def test_a_broken_tensorrt_install_is_reported_in_one_line(tmp_path: Path) -> None:
    out = _python(
        "from densenas.profilers.tensorrt_backend import TensorRTProfiler; print(TensorRTProfiler.available())",
        "raise OSError('libnvinfer.so.10: cannot open shared object file\\nsecond line')\n",
        tmp_path,
    )
    assert "cannot import tensorrt (OSError: libnvinfer.so.10" in out and "\\n" not in out
    assert INSTALL_HINT in out


def test_tensorrt_older_than_10_is_refused(tmp_path: Path) -> None:
    out = _python(
        "from densenas.profilers.tensorrt_backend import TensorRTProfiler; print(TensorRTProfiler.available()[1])",
        "__version__ = '8.6.1'\n",
        tmp_path,
    )
    assert out.startswith("tensorrt: TensorRT 8.6.1 found, 10 or newer needed")


def test_tensorrt_without_a_gpu_is_refused(tmp_path: Path) -> None:
    out = _python(
        "from densenas.profilers.tensorrt_backend import TensorRTProfiler; print(TensorRTProfiler.available()[1])",
        "__version__ = '10.3.0'\n",
        tmp_path,
    )
    assert out.startswith("tensorrt: no CUDA GPU visible") and "NVIDIA GPU" in out
