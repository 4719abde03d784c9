"""What an install carries: the explicit package list and data globs of pyproject.toml
against the tree, the shipped spaces, recipes and LUTs read through importlib.resources,
the entry points, and a real wheel built from a copy of the tree."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import distribution, entry_points
from importlib.resources import files
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS.get("package-dir", {})
PACKAGE_DATA: dict[str, list[str]] = SETUPTOOLS.get("package-data", {})
DATA_PACKAGES = ("densenas.configs", "densenas.luts")


def _folder(package: str) -> Path:
    """Where a package's files are in the repository, through the package-dir mapping."""
    for name, folder in PACKAGE_DIR.items():
        if package == name or package.startswith(name + "."):
            return ROOT / folder / Path(*package[len(name) :].split(".")[1:])
    return ROOT / Path(*package.split("."))


def _packages_in_tree() -> set[str]:
    """Every folder with an __init__.py under densenas/ and under each mapped folder."""
    roots = {"densenas": ROOT / "densenas", **{name: ROOT / folder for name, folder in PACKAGE_DIR.items()}}
    found = set()
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root).parts
            found.add(".".join((name, *rel)))
    return found


def _data_files(package: str) -> set[str]:
    """A data package's files, relative to it: everything but code and caches."""
    root = _folder(package)
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    }


def _matched(package: str, names: set[str]) -> set[str]:
    return {n for n in names if any(fnmatch.fnmatchcase(n, g) for g in PACKAGE_DATA.get(package, []))}


def test_the_package_list_is_every_package_of_the_tree() -> None:
    assert set(SETUPTOOLS["packages"]) == _packages_in_tree()


@pytest.mark.parametrize("package", DATA_PACKAGES)
def test_the_data_globs_ship_every_data_file(package: str) -> None:
    names = _data_files(package)
    assert names, f"{package} has no data files"
    assert _matched(package, names) == names, f"not shipped: {sorted(names - _matched(package, names))}"


def test_shipped_spaces_recipes_and_luts_load_through_importlib_resources() -> None:
    from densenas.lut.store import list_shipped, load_lut
    from densenas.space import SearchSpace
    from densenas.space.config import shipped_spaces
    from densenas.train.recipe import shipped_recipes

    configs = files("densenas.configs")
    assert {"mbv2", "mbv2-tiny", "resnet"} <= set(shipped_spaces())
    for name in ("mbv2", "mbv2-tiny", "resnet"):
        assert configs.joinpath(f"{name}.yaml").is_file()
        assert SearchSpace.load(name).name == name
    assert {"default", "digits"} <= set(shipped_recipes())
    assert configs.joinpath("train", "default.yaml").is_file()

    luts = files("densenas.luts")
    shipped = list_shipped()
    assert {"mbv2-tiny/onnxruntime-cpu@2", "mbv2/paper-titanxp@1", "resnet/paper-titanxp@1"} <= {r["name"] for r in shipped}
    for row in shipped:
        assert "error" not in row, row
        space, lut = row["name"].split("/")
        assert luts.joinpath(space, f"{lut}.json").is_file()
        assert load_lut(row["name"]).rows


def test_every_entry_point_of_the_installed_distribution_resolves() -> None:
    from densenas.profilers.base import Profiler

    dist = distribution("densenas")
    declared_scripts = PYPROJECT["project"]["scripts"]
    scripts = {ep.name: ep for ep in dist.entry_points if ep.group == "console_scripts"}
    assert {n: ep.value for n, ep in scripts.items()} == declared_scripts
    assert callable(scripts["densenas"].load())
    profilers = {ep.name: ep for ep in entry_points(group="densenas.profilers") if ep.dist.name == "densenas"}
    assert set(profilers) == set(PYPROJECT["project"]["entry-points"]["densenas.profilers"])
    for name, ep in profilers.items():
        cls = ep.load()
        assert issubclass(cls, Profiler) and cls.name == name and not cls.missing_parts()


def _metadata_values(text: str, field: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(f"{field}:")]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built from a copy of the tree (building writes build/ beside the sources)
    with this environment's setuptools, as CI builds the one it installs."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in {"densenas", *PACKAGE_DIR.values()}:
        shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp / "dist").glob("densenas-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_holds_every_module_and_data_file_under_its_installed_name(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for package in SETUPTOOLS["packages"]:
        where = "/".join(package.split("."))
        for module in _folder(package).glob("*.py"):
            assert f"{where}/{module.name}" in names, (package, module.name)
    for package in DATA_PACKAGES:
        where = "/".join(package.split("."))
        for data in _data_files(package):
            assert f"{where}/{data}" in names, (package, data)
    assert not any(n.startswith(("profilers/", "configs/", "luts/", "tests/")) for n in names)  # no top-level clash


def test_the_wheel_declares_the_dependencies_and_entry_points_of_pyproject(wheel: zipfile.ZipFile) -> None:
    info = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
    metadata = wheel.read(f"{info}/METADATA").decode()
    requires = {Requirement(r) for r in _metadata_values(metadata, "Requires-Dist") if "extra ==" not in r}
    assert requires == {Requirement(r) for r in PYPROJECT["project"]["dependencies"]}
    entry_points_txt = wheel.read(f"{info}/entry_points.txt").decode()
    for name, target in PYPROJECT["project"]["entry-points"]["densenas.profilers"].items():
        assert f"{name} = {target}" in entry_points_txt
    assert "densenas = densenas.cli:main" in entry_points_txt
