"""``densenas data ...``: in-process through typer's runner, and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from densenas.cli.data import register
from densenas.errors import DensenasError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """An app with only the data commands, so these tests do not depend on the others."""
    local = typer.Typer(add_completion=False)
    register(local)
    return local


def _run(app: typer.Typer, *args: str | Path) -> tuple[dict, str]:
    result = CliRunner().invoke(app, ["data", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


def test_split_list_pack_info_with_json(app: typer.Typer, imagenet_tree: Path, tmp_path: Path) -> None:
    listing = tmp_path / "search.txt"
    summary, _ = _run(app, "split-imagenet", "--image-path", imagenet_tree, "--classes", "4",
                      "--val-fraction", "0.2", "--seed", "3", "--out", listing, "--json")
    assert summary == {"list": str(listing), "classes": 4, "train": 32, "val": 8}
    db = tmp_path / "search"
    for split, count in (("train", 32), ("val", 8)):
        packed, _ = _run(app, "pack-lmdb", "--image-path", imagenet_tree, "--list", listing,
                         "--out", db, "--split", split, "--json")
        assert packed == {"written": count, "skipped": [], "db": str(db / f"{split}.lmdb")}
    info, _ = _run(app, "info", "--data", db, "--json")
    assert (info["kind"], info["num_classes"], info["train"], info["val"]) == ("lmdb", 4, 32, 8)


def test_pack_reports_the_truncated_image(app: typer.Typer, image_tree: Path, tmp_path: Path) -> None:
    listing = tmp_path / "all.txt"
    summary, _ = _run(app, "list-images", "--image-path", image_tree, "--out", listing, "--json")
    assert (summary["classes"], summary["train"], summary["val"]) == (3, 18, 6)
    packed, stderr = _run(app, "pack-lmdb", "--image-path", image_tree, "--list", listing,
                          "--out", tmp_path / "db", "--split", "train", "--json")
    bad = str(image_tree / "train" / "cat" / "img 4.jpg")
    assert packed["written"] == 17 and packed["skipped"] == [bad]
    assert any(bad in line and "warning" in line for line in stderr.splitlines())


def test_plain_output_is_a_summary_line(app: typer.Typer, image_tree: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "list-images", "--image-path", str(image_tree),
                                      "--out", str(tmp_path / "l.txt")])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"wrote {tmp_path / 'l.txt'}: 3 classes, 18 train and 6 val images"


def test_user_errors_name_the_path(app: typer.Typer, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "list-images", "--image-path", str(tmp_path / "gone"),
                                      "--out", str(tmp_path / "l.txt")])
    assert isinstance(result.exception, DensenasError)
    assert str(tmp_path / "gone") in str(result.exception)
    assert not (tmp_path / "l.txt").exists()


def _full_cli_has_data() -> bool:
    try:
        from typer.main import get_command

        from densenas.cli import app as full_app
    except Exception:
        return False
    return "data" in getattr(get_command(full_app), "commands", {})


@pytest.mark.skipif(not _full_cli_has_data(), reason="densenas.cli does not register the data commands yet")
def test_python_m_densenas_data_subprocess(image_tree: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "densenas", "data", *map(str, args)],
                              capture_output=True, text=True, env=env, timeout=120)

    listing = tmp_path / "all.txt"
    done = cli("list-images", "--image-path", image_tree, "--out", listing, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["train"] == 18
    done = cli("pack-lmdb", "--image-path", image_tree, "--list", listing, "--out", tmp_path / "db",
               "--split", "train", "--json")
    assert done.returncode == 0, done.stderr
    bad = str(image_tree / "train" / "cat" / "img 4.jpg")
    assert json.loads(done.stdout)["skipped"] == [bad] and bad in done.stderr
    missing = cli("list-images", "--image-path", tmp_path / "gone", "--out", listing)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'gone'}: no such image directory"
