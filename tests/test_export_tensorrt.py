"""export --format tensorrt: against strict fakes of TensorRT 10 and 11 (host memory for
the GPU) the engine is built strongly typed with TF32 off, checked against the fp32 CPU
model at every batch of its profile, and written; on this machine without TensorRT,
profile, bench and export with TensorRT are one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from densenas.arch import Arch, ArchBlock
from densenas.errors import DensenasError
from densenas.export import export_arch
from densenas.profilers.tensorrt_backend import TensorRTProfiler
from tests.conftest import assert_user_error, run_cli
from tests.micro_space import MICRO
from tests.trt_surface.strict_fake import surface_paths, use_fake

SURFACES = surface_paths()


def _arch() -> Arch:
    blocks = (ArchBlock(8, 12, 1, "mbconv_k3_t3", ("mbconv_k3_t3",)), ArchBlock(12, 16, 2, "mbconv_k5_t6", ()))
    return Arch("mbv2-micro", 16, 10, "mbv2", 8, 8, blocks, (16, 32)).validate()


@pytest.fixture(params=SURFACES, ids=[p.stem for p in SURFACES])
def fake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    return use_fake(monkeypatch, request.param)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_static_engine_is_checked_and_written(fake, tmp_path: Path, precision: str) -> None:
    _, knobs = fake
    out = tmp_path / f"{precision}.engine"
    result = export_arch(_arch(), out, fmt="tensorrt", precision=precision, batch=2)
    d = result.to_dict()
    assert out.stat().st_size == d["size_bytes"] > 0 and "batch_profile" not in d
    assert [c.batch for c in result.checks] == [2] and all(c.ok for c in result.checks)
    built = knobs.builds[-1]
    assert built["strongly_typed"] and "TF32" not in built["flags"]
    assert built["inputs"][0]["dtype"] == ("HALF" if precision == "fp16" else "FLOAT")
    assert "strongly typed, TF32 off" in result.runtime


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_dynamic_batch_engine_is_built_and_checked_for_min_opt_max(fake, tmp_path: Path, precision: str) -> None:
    _, knobs = fake
    result = export_arch(_arch(), tmp_path / "dyn.engine", fmt="tensorrt", precision=precision, batch=2,
                         dynamic_batch=True, max_batch=5)
    assert result.to_dict()["batch_profile"] == {"min": 1, "opt": 2, "max": 5}
    assert [c.batch for c in result.checks] == [1, 2, 5] and all(c.ok for c in result.checks)
    assert knobs.builds[-1]["profiles"] == [{"input": [[1, 3, 16, 16], [2, 3, 16, 16], [5, 3, 16, 16]]}]


def test_tensorrt_availability_is_checked_once_per_export(fake, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    checks = []
    available = TensorRTProfiler.available
    monkeypatch.setattr(TensorRTProfiler, "available", classmethod(lambda cls: checks.append(cls) or available()))
    export_arch(_arch(), tmp_path / "m.engine", fmt="tensorrt", dynamic_batch=True, max_batch=3)
    assert len(checks) == 1


def test_default_max_batch_is_32(fake, tmp_path: Path) -> None:
    result = export_arch(_arch(), tmp_path / "dyn.engine", fmt="tensorrt", dynamic_batch=True)
    assert result.batch_profile == (1, 1, 32)


def test_a_tensorrt_failure_is_one_line_and_writes_nothing(fake, tmp_path: Path) -> None:
    with pytest.raises(DensenasError, match="differs from PyTorch"):
        export_arch(_arch(), tmp_path / "x.engine", fmt="tensorrt", tolerance=0.0)
    assert not (tmp_path / "x.engine").exists()


def test_max_batch_options_are_checked_first(tmp_path: Path) -> None:
    arch = tmp_path / "arch.json"
    _arch().save(arch)
    base = ("export", "--arch", str(arch), "--out", str(tmp_path / "m.engine"))
    assert_user_error(run_cli(*base, "--format", "tensorrt", "--max-batch", "4"), "--max-batch needs --dynamic-batch")
    assert_user_error(run_cli(*base, "--format", "tensorrt", "--dynamic-batch", "--batch", "8", "--max-batch", "4"),
                      "--max-batch must be at least --batch (8)")
    assert_user_error(run_cli(*base, "--dynamic-batch", "--max-batch", "4"), "--max-batch is for --format tensorrt")


@pytest.mark.skipif(TensorRTProfiler.available()[0], reason="TensorRT runs here; the refusal cannot be exercised")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_profile_bench_export_without_tensorrt_are_one_line_exit_2(tmp_path: Path, precision: str) -> None:
    arch, space = tmp_path / "arch.json", tmp_path / "micro.yaml"
    _arch().save(arch)
    space.write_text(MICRO)
    engine = tmp_path / "m.engine"
    runs = [
        ("profile", "--space", str(space), "--backend", "tensorrt", "--precision", precision,
         "--out", str(tmp_path / "lut.json")),
        ("bench", "--arch", str(arch), "--backend", "tensorrt", "--precision", precision),
        ("export", "--arch", str(arch), "--format", "tensorrt", "--precision", precision, "--out", str(engine)),
    ]
    for args in runs:
        assert_user_error(run_cli(*args, cwd=tmp_path), "tensorrt: ")
    assert not engine.exists() and not (tmp_path / "lut.json").exists()
