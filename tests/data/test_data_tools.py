"""The paper's data tools: split-imagenet, list-images, pack-lmdb."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from densenas.data.lmdb_store import LmdbImageDataset, read_meta
from densenas.data.tools import (
    ImageEntry,
    ImageList,
    list_images,
    pack_lmdb,
    read_image_list,
    split_imagenet,
    write_image_list,
)
from densenas.errors import DensenasError

CLASSES = ("cat", "dog", "fox")  # the class folders conftest.make_tree writes


def test_list_images_lists_every_image_with_its_split_and_class(image_tree: Path) -> None:
    found = list_images(image_tree)
    on_disk = {p.relative_to(image_tree).as_posix() for p in image_tree.rglob("img *")}
    assert {e.path for e in found.entries} == on_disk
    assert found.classes == list(CLASSES)
    for e in found.entries:
        split, cls = e.path.split("/")[:2]
        assert e.split == split
        assert found.classes[e.label] == cls
    assert (found.count("train"), found.count("val")) == (18, 6)


def test_list_images_of_a_flat_tree_uses_the_given_split(image_tree: Path) -> None:
    found = list_images(image_tree / "val", split="val")
    assert {e.split for e in found.entries} == {"val"}
    assert len(found.entries) == 6
    assert all(not e.path.startswith("val/") for e in found.entries)


def test_list_file_round_trips_paths_with_spaces(image_tree: Path, tmp_path: Path) -> None:
    found = list_images(image_tree)
    path = tmp_path / "lists" / "all.txt"
    write_image_list(path, found)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# densenas.image_list/1 ")
    assert len(lines) == 1 + len(found.entries)
    back = read_image_list(path)
    assert back.entries == found.entries
    assert back.classes == found.classes
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, no leftovers


def test_split_imagenet_is_80_20_per_class_and_disjoint(imagenet_tree: Path) -> None:
    split = split_imagenet(imagenet_tree, classes=3, val_fraction=0.2, seed=1)
    assert len(split.classes) == 3 and split.classes == sorted(split.classes)
    per = Counter((e.split, e.label) for e in split.entries)
    for label in range(3):
        assert (per[("train", label)], per[("val", label)]) == (8, 2)
    paths = [e.path for e in split.entries]
    assert len(paths) == len(set(paths))
    for e in split.entries:  # relative to the given root, class folder matches the label
        assert e.path.split("/")[:2] == ["train", split.classes[e.label]]


def test_split_imagenet_is_deterministic_for_a_seed(imagenet_tree: Path) -> None:
    a = split_imagenet(imagenet_tree, classes=3, seed=7)
    b = split_imagenet(imagenet_tree / "train", classes=3, seed=7)  # the train tree itself
    assert a.classes == b.classes
    assert [(e.split, e.label) for e in a.entries] == [(e.split, e.label) for e in b.entries]
    assert [e.path for e in a.entries] == ["train/" + e.path for e in b.entries]
    assert a.entries == split_imagenet(imagenet_tree, classes=3, seed=7).entries


def test_split_imagenet_differs_for_another_seed(imagenet_tree: Path) -> None:
    a = split_imagenet(imagenet_tree, classes=3, seed=0)
    others = [split_imagenet(imagenet_tree, classes=3, seed=s) for s in (1, 2)]
    assert all((o.classes, o.entries) != (a.classes, a.entries) for o in others)
    # with every class chosen, the val images still differ by seed
    va = {e.path for e in split_imagenet(imagenet_tree, classes=5, seed=0).entries if e.split == "val"}
    vb = {e.path for e in split_imagenet(imagenet_tree, classes=5, seed=1).entries if e.split == "val"}
    assert va != vb


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"classes": 6}, "fewer than --classes 6"),
        ({"classes": 0}, "--classes"),
        ({"val_fraction": 1.0}, "--val-fraction"),
    ],
)
def test_split_imagenet_rejects_bad_requests(imagenet_tree: Path, kwargs: dict, needle: str) -> None:
    with pytest.raises(DensenasError, match=needle.replace("-", r"\-")):
        split_imagenet(imagenet_tree, **kwargs)


def test_missing_image_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(DensenasError, match="nowhere: no such image directory"):
        list_images(tmp_path / "nowhere")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DensenasError, match="no images found"):
        list_images(tmp_path / "empty")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        ("train only-two", "expected 'split relative_path label'"),
        ("train a/b.jpg x", "label 'x'"),
        ("train /etc/passwd 0", "must be relative"),
        ("train ../up.jpg 0", "must be relative"),
    ],
)
def test_bad_list_line_is_named_by_file_and_line(tmp_path: Path, line: str, needle: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(f"# a comment\ntrain a/ok.jpg 0\n{line}\n")
    with pytest.raises(DensenasError) as info:
        read_image_list(path)
    assert f"{path}:3" in str(info.value) and needle in str(info.value)


def test_pack_round_trips_bytes_and_skips_a_truncated_image(image_tree: Path, tmp_path: Path) -> None:
    listing = tmp_path / "all.txt"
    write_image_list(listing, list_images(image_tree))
    out = tmp_path / "packed"
    result = pack_lmdb(image_tree, listing, out, split="train", workers=2, show_progress=False)
    bad = str(image_tree / "train" / "cat" / "img 4.jpg")
    assert result.skipped == [bad]
    assert result.written == 17
    assert result.db == out / "train.lmdb"
    ds = LmdbImageDataset(result.db)
    assert len(ds) == 17 and ds.classes == list(CLASSES) and ds.split == "train"
    seen = set()
    for i in range(len(ds)):
        rec = ds.record(i)
        assert rec.data == (image_tree / rec.path).read_bytes()
        assert ds.classes[rec.label] == rec.path.split("/")[1]
        seen.add(rec.path)
    expected = {p.relative_to(image_tree).as_posix() for p in (image_tree / "train").rglob("img *")}
    assert seen == expected - {"train/cat/img 4.jpg"}
    assert sorted(p.name for p in out.iterdir()) == ["train.lmdb"]  # no temp files, no lock file


def test_pack_warns_with_the_skipped_path_on_stderr(
    image_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = tmp_path / "all.txt"
    write_image_list(listing, list_images(image_tree))
    (image_tree / "train" / "dog" / "img 1.png").unlink()  # listed, then deleted: missing
    result = pack_lmdb(image_tree, listing, tmp_path / "db", split="train", show_progress=False)
    captured = capsys.readouterr()
    assert captured.out == ""
    err_lines = captured.err.splitlines()
    missing = str(image_tree / "train" / "dog" / "img 1.png")
    truncated = str(image_tree / "train" / "cat" / "img 4.jpg")
    assert any(missing in ln and "missing" in ln for ln in err_lines)
    assert any(truncated in ln and "does not decode" in ln for ln in err_lines)
    assert sorted(result.skipped) == sorted([missing, truncated])
    assert result.written == 16


def test_pack_replaces_an_existing_db_and_fails_without_leaving_one(
    image_tree: Path, tmp_path: Path
) -> None:
    listing = tmp_path / "all.txt"
    write_image_list(listing, list_images(image_tree))
    out = tmp_path / "db"
    pack_lmdb(image_tree, listing, out, split="val", show_progress=False)
    assert read_meta(out / "val.lmdb").count == 6
    only_bad = tmp_path / "bad.txt"
    write_image_list(
        only_bad, ImageList([ImageEntry("val", "train/cat/img 4.jpg", 0)], classes=list(CLASSES))
    )
    with pytest.raises(DensenasError, match="none of the 1 val images is readable"):
        pack_lmdb(image_tree, only_bad, out, split="val", show_progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["val.lmdb"]  # the old DB, untouched
    assert read_meta(out / "val.lmdb").count == 6
    train_only = tmp_path / "train_only.txt"
    write_image_list(train_only, list_images(image_tree / "train"))
    with pytest.raises(DensenasError, match="no images in split 'val'"):
        pack_lmdb(image_tree / "train", train_only, out, split="val", show_progress=False)
