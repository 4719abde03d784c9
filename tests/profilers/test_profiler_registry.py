"""Finding profilers by name: the built-ins' entry points, and third-party backends
registered the same way, complete or not (real distributions on sys.path, real entry
points, and the real CLI for what a user sees)."""

from __future__ import annotations

import os
import sys
import textwrap
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from densenas.profilers import ProfilerError, get_profiler_class, list_profilers
from densenas.profilers.base import Profiler
from densenas.profilers.registry import GROUP, describe_profilers
from tests.conftest import assert_user_error, run_cli

ROOT = Path(__file__).resolve().parents[2]
DECLARED: dict[str, str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][GROUP]

PLUGIN_MODULE = """
from densenas.profilers.base import Profiler
from densenas.profilers.torch_cpu import TorchCPUProfiler

class ThirdPartyProfiler(TorchCPUProfiler):
    name = "third-party"

class Misnamed(TorchCPUProfiler):
    name = "something-else"

class Incomplete(Profiler):
    name = "third-party"
    device_kind = "cpu"

    @classmethod
    def available(cls):
        return True, "third-party: always"

    @classmethod
    def backend_version(cls):
        return "0.1"

class RaisesOnStart(TorchCPUProfiler):
    name = "third-party"

    def __init__(self, **kwargs):
        raise RuntimeError("vendor runtime not initialised")

NotAProfiler = object
"""


def test_the_four_builtins_are_declared_and_listed() -> None:
    assert set(DECLARED) == {"torch-cpu", "torch-cuda", "onnxruntime", "tensorrt"}
    assert set(DECLARED) <= set(list_profilers())


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_each_builtin_resolves_to_a_profiler_of_that_name(name: str) -> None:
    cls = get_profiler_class(name)
    assert issubclass(cls, Profiler) and cls.name == name
    assert f"{cls.__module__}:{cls.__qualname__}" == DECLARED[name]


def test_the_installed_entry_points_are_the_ones_pyproject_declares() -> None:
    installed = {ep.name: ep.value for ep in entry_points(group=GROUP) if ep.dist and ep.dist.name == "densenas"}
    assert installed == DECLARED  # a stale install (pip install -e . not rerun) shows here


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ProfilerError, match="unknown profiler backend 'no-such-backend'; known: .*torch-cpu"):
        get_profiler_class("no-such-backend")


def test_describe_reports_availability_with_reasons() -> None:
    rows = {name: (ok, reason) for name, ok, reason in describe_profilers()}
    assert rows["torch-cpu"][0] and rows["onnxruntime"][0]
    assert all(reason.startswith(name) for name, (_, reason) in rows.items() if name in DECLARED)


def _plugin_dir(tmp_path: Path, *entries: str, module: str = PLUGIN_MODULE) -> Path:
    """A directory holding what pip leaves for a distribution: its module and a
    ``.dist-info`` whose entry_points.txt declares ``entries`` in the profilers group."""
    (tmp_path / "thirdparty_profiler.py").write_text(textwrap.dedent(module))
    dist = tmp_path / "thirdparty_profiler-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-profiler\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{GROUP}]\n" + "".join(f"{e}\n" for e in entries))
    return tmp_path


def _install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *entries: str) -> None:
    monkeypatch.syspath_prepend(str(_plugin_dir(tmp_path, *entries)))
    monkeypatch.delitem(sys.modules, "thirdparty_profiler", raising=False)


def test_a_third_party_backend_registers_by_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(tmp_path, monkeypatch, "third-party = thirdparty_profiler:ThirdPartyProfiler")
    assert "third-party" in list_profilers()
    cls = get_profiler_class("third-party")
    assert cls.__name__ == "ThirdPartyProfiler" and issubclass(cls, Profiler)


def test_a_plugin_cannot_shadow_a_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install(tmp_path, monkeypatch, "onnxruntime = thirdparty_profiler:ThirdPartyProfiler")
    assert get_profiler_class("onnxruntime").__module__ == "densenas.profilers.ort"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("thirdparty_profiler:NotAProfiler", "is <class 'object'>, which is not a densenas.profilers.Profiler subclass"),
        ("thirdparty_profiler:Incomplete", "is incomplete: Incomplete lacks _fingerprint_extra(), _prepare(), timing_scope()"),
        ("thirdparty_profiler:Misnamed", "Misnamed.name is 'something-else'; it must equal the entry point's name"),
        ("thirdparty_profiler:Absent", "cannot be loaded: AttributeError"),
    ],
)
def test_a_broken_plugin_is_refused_naming_it_and_what_is_wrong(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, message: str
) -> None:
    _install(tmp_path, monkeypatch, f"third-party = {target}")
    with pytest.raises(ProfilerError) as info:
        get_profiler_class("third-party")
    assert str(info.value).startswith(f"profiler backend 'third-party' ({target}, from thirdparty-profiler 0.1)")
    assert message in str(info.value)
    rows = {name: (ok, reason) for name, ok, reason in describe_profilers()}
    assert rows["third-party"] == (False, str(info.value))  # listed as unavailable, not raised


def _cli_with_plugin(plugin_dir: Path, *args: str):
    path = os.pathsep.join(p for p in (str(plugin_dir), os.environ.get("PYTHONPATH", "")) if p)
    return run_cli(*args, env={"PYTHONPATH": path}, timeout=120)


def test_profile_with_an_incomplete_plugin_is_one_line_and_exit_2(tmp_path: Path) -> None:
    plugin = _plugin_dir(tmp_path, "third-party = thirdparty_profiler:Incomplete")
    proc = _cli_with_plugin(plugin, "profile", "--space", "mbv2-tiny", "--backend", "third-party", "--out", str(tmp_path / "x.json"))
    assert_user_error(proc, "profiler backend 'third-party'", "thirdparty-profiler 0.1", "lacks _fingerprint_extra(), _prepare()")
    assert not (tmp_path / "x.json").exists()


def test_profile_with_a_plugin_that_raises_on_import_is_one_line_and_exit_2(tmp_path: Path) -> None:
    plugin = _plugin_dir(tmp_path, "third-party = thirdparty_profiler:ThirdPartyProfiler",
                         module="import no_such_vendor_library\n")
    proc = _cli_with_plugin(plugin, "profile", "--space", "mbv2-tiny", "--backend", "third-party")
    assert_user_error(proc, "profiler backend 'third-party'", "cannot be loaded: ModuleNotFoundError",
                      "no_such_vendor_library")


def test_profile_with_a_plugin_that_raises_on_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    plugin = _plugin_dir(tmp_path, "third-party = thirdparty_profiler:RaisesOnStart")
    proc = _cli_with_plugin(plugin, "profile", "--space", "mbv2-tiny", "--backend", "third-party", "--out", str(tmp_path / "x.json"))
    assert_user_error(proc, "third-party: the backend (thirdparty_profiler.RaisesOnStart) failed to start",
                      "RuntimeError: vendor runtime not initialised")
    assert not (tmp_path / "x.json").exists()


def test_profile_help_lists_the_installed_backends_plugins_included(tmp_path: Path) -> None:
    plugin = _plugin_dir(tmp_path, "third-party = thirdparty_profiler:ThirdPartyProfiler")
    proc = _cli_with_plugin(plugin, "profile", "--help")
    assert proc.returncode == 0, proc.stderr
    flat = " ".join(proc.stdout.replace("│", " ").split())  # rich wraps help text inside a box
    for name in (*DECLARED, "third-party"):
        assert name in flat, (name, proc.stdout)
