"""Finding profilers by name: built-ins, entry points, and a third-party backend."""

from __future__ import annotations

import sys
import textwrap
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from densenas.profilers import ProfilerError, get_profiler_class, list_profilers
from densenas.profilers.base import Profiler
from densenas.profilers.registry import BUILTINS, GROUP, describe_profilers

ROOT = Path(__file__).resolve().parents[2]


def test_the_four_builtins_are_listed() -> None:
    assert {"torch-cpu", "torch-cuda", "onnxruntime", "tensorrt"} <= set(list_profilers())


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_each_builtin_resolves_to_a_profiler_of_that_name(name: str) -> None:
    cls = get_profiler_class(name)
    assert issubclass(cls, Profiler) and cls.name == name


def test_builtins_match_the_entry_points_declared_in_pyproject() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][GROUP]
    assert declared == BUILTINS
    for ep in entry_points(group=GROUP):  # present once the project is pip-installed
        if ep.name in BUILTINS:
            assert ep.value == BUILTINS[ep.name]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ProfilerError, match="unknown profiler backend 'openvino'.*torch-cpu"):
        get_profiler_class("openvino")


def test_describe_reports_availability_with_reasons() -> None:
    rows = {name: (ok, reason) for name, ok, reason in describe_profilers()}
    assert rows["torch-cpu"][0] and rows["onnxruntime"][0]
    assert all(reason.startswith(name) for name, (_, reason) in rows.items())


def _install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """A distribution on sys.path that declares a profiler entry point, as pip would leave it."""
    (tmp_path / "thirdparty_profiler.py").write_text(
        textwrap.dedent(
            """
            from densenas.profilers.torch_cpu import TorchCPUProfiler

            class ThirdPartyProfiler(TorchCPUProfiler):
                name = "third-party"

            NotAProfiler = object
            """
        )
    )
    dist = tmp_path / "thirdparty_profiler-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-profiler\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{GROUP}]\nthird-party = {target}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "thirdparty_profiler", raising=False)


def test_a_third_party_backend_registers_by_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin(tmp_path, monkeypatch, "thirdparty_profiler:ThirdPartyProfiler")
    assert "third-party" in list_profilers()
    cls = get_profiler_class("third-party")
    assert cls.__name__ == "ThirdPartyProfiler" and issubclass(cls, Profiler)


def test_an_entry_point_that_is_not_a_profiler_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin(tmp_path, monkeypatch, "thirdparty_profiler:NotAProfiler")
    with pytest.raises(ProfilerError, match="not a profilers.Profiler subclass"):
        get_profiler_class("third-party")
