"""The paper's data tools: the 80/20 class split of ImageNet for search, image lists for
retraining, and packing listed images into LMDB.

An image list is a text file, one image a line: ``split relative_path label``, paths
relative to the image root with ``/`` separators (a path may contain spaces: the split is
the first field, the label the last). Its first line is a comment carrying a JSON header
with the class names, so a packed LMDB knows them too. Everything is deterministic for a
seed: directory listings are sorted before any seeded shuffling.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from densenas.errors import DensenasError
from densenas.fileio import atomic_path, write_text

LIST_TAG = "densenas.image_list/1"
SPLITS = ("train", "val")
# the extensions torchvision's ImageFolder accepts
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
_PACK_CHUNK = 256


@dataclass(frozen=True)
class ImageEntry:
    """One line of an image list."""

    split: str
    path: str  # relative to the image root, '/'-separated
    label: int


@dataclass
class ImageList:
    """The images of a list file and the class names their labels index."""

    entries: list[ImageEntry]
    classes: list[str]
    header: dict[str, Any] = field(default_factory=dict)

    def count(self, split: str) -> int:
        return sum(1 for e in self.entries if e.split == split)


@dataclass
class PackResult:
    written: int
    skipped: list[str]
    db: Path

    def to_json(self) -> dict[str, Any]:
        return {"written": self.written, "skipped": self.skipped, "db": str(self.db)}


# ---------------------------------------------------------------- listing image trees


def _require_dir(path: Path, what: str = "image directory") -> Path:
    if not path.exists():
        raise DensenasError(f"{path}: no such {what}")
    if not path.is_dir():
        raise DensenasError(f"{path}: is not a directory")
    return path


def _class_dirs(root: Path) -> list[str]:
    return sorted(
        e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")
    )


def _images_under(class_dir: Path, rel_to: Path) -> list[str]:
    """Every image file below ``class_dir`` (recursively, as ImageFolder finds them),
    as sorted '/'-separated paths relative to ``rel_to``."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMG_EXTENSIONS):
                found.append(Path(dirpath, name).relative_to(rel_to).as_posix())
    return sorted(found)


def split_imagenet(
    image_path: str | os.PathLike,
    *,
    classes: int = 100,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> ImageList:
    """The paper's search set: ``classes`` class folders of an ImageNet-style train tree,
    each class's images split into train and val (``val_fraction`` to val).

    ``image_path`` is the train tree itself (class folders) or its parent holding
    ``train/``; list paths are relative to ``image_path`` either way, so the same
    directory is handed to ``pack_lmdb``. Labels index the chosen classes in sorted order.
    """
    root = _require_dir(Path(image_path))
    if classes < 1:
        raise DensenasError(f"--classes must be at least 1, got {classes}")
    if not 0.0 < val_fraction < 1.0:
        raise DensenasError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    tree = root / "train" if (root / "train").is_dir() else root
    available = _class_dirs(tree)
    if not available:
        raise DensenasError(f"{tree}: no class folders found")
    if len(available) < classes:
        raise DensenasError(
            f"{tree}: has {len(available)} class folders, fewer than --classes {classes}"
        )
    rng = random.Random(seed)
    chosen = sorted(rng.sample(available, classes))
    train: list[ImageEntry] = []
    val: list[ImageEntry] = []
    for label, name in enumerate(chosen):
        images = _images_under(tree / name, root)
        if len(images) < 2:
            raise DensenasError(
                f"{tree / name}: has {len(images)} images; a class needs at least 2 to split"
            )
        rng.shuffle(images)
        n_val = min(max(round(len(images) * val_fraction), 1), len(images) - 1)
        val += [ImageEntry("val", p, label) for p in images[:n_val]]
        train += [ImageEntry("train", p, label) for p in images[n_val:]]
    entries = sorted(train, key=lambda e: e.path) + sorted(val, key=lambda e: e.path)
    header = {
        "tool": "split-imagenet",
        "classes_chosen": classes,
        "val_fraction": val_fraction,
        "seed": seed,
    }
    return ImageList(entries=entries, classes=chosen, header=header)


def list_images(image_path: str | os.PathLike, *, split: str = "train") -> ImageList:
    """Every image of a tree, for the retraining set.

    With ``train/`` and/or ``val/`` folders, the split of each image is its top-level
    folder (other top-level entries are not listed); otherwise ``image_path`` is one tree
    of class folders and every image gets ``split``. Labels index the sorted union of the
    class names, so train and val agree.
    """
    root = _require_dir(Path(image_path))
    roots = [(s, root / s) for s in SPLITS if (root / s).is_dir()] or [(split, root)]
    per_split = [(s, sroot, _class_dirs(sroot)) for s, sroot in roots]
    names = sorted({c for _, _, cs in per_split for c in cs})
    if not names:
        raise DensenasError(f"{root}: no class folders found")
    label_of = {c: i for i, c in enumerate(names)}
    entries: list[ImageEntry] = []
    for s, sroot, class_names in per_split:
        for c in class_names:
            entries += [ImageEntry(s, p, label_of[c]) for p in _images_under(sroot / c, root)]
    if not entries:
        raise DensenasError(f"{root}: no images found (looked for {', '.join(IMG_EXTENSIONS)})")
    return ImageList(entries=entries, classes=names, header={"tool": "list-images"})


# ------------------------------------------------------------------- list files


def format_image_list(image_list: ImageList) -> str:
    header = dict(image_list.header)
    header["columns"] = ["split", "relative_path", "label"]
    header["classes"] = image_list.classes
    lines = [f"# {LIST_TAG} {json.dumps(header, ensure_ascii=False)}"]
    lines += [f"{e.split} {e.path} {e.label}" for e in image_list.entries]
    return "\n".join(lines) + "\n"


def write_image_list(path: str | os.PathLike, image_list: ImageList) -> None:
    """Write the list atomically (a header comment line, then one image a line)."""
    for e in image_list.entries:
        if "\n" in e.path or "\r" in e.path or e.path != e.path.strip():
            raise DensenasError(f"{e.path!r}: a path with line breaks or edge spaces can't be listed")
    write_text(path, format_image_list(image_list))


def _check_rel_path(path: str, where: str) -> None:
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or "\\" in path:
        raise DensenasError(f"{where}: path {path!r} must be relative to the image root")


def read_image_list(path: str | os.PathLike) -> ImageList:
    """Parse a list file; a malformed line is a DensenasError naming ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise DensenasError(f"{path}: no such list file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DensenasError(f"{path}: cannot read list file ({exc})") from None
    header: dict[str, Any] = {}
    entries: list[ImageEntry] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        where = f"{path}:{lineno}"
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            body = line[1:].strip()
            if body.startswith(LIST_TAG):
                try:
                    header = json.loads(body[len(LIST_TAG) :])
                except json.JSONDecodeError as exc:
                    raise DensenasError(f"{where}: list header is not valid JSON ({exc})") from None
                if not isinstance(header, dict):
                    raise DensenasError(f"{where}: list header must be a JSON object")
            continue
        fields = line.split(None, 1)
        rest = fields[1].rsplit(None, 1) if len(fields) == 2 else []
        if len(rest) != 2:
            raise DensenasError(f"{where}: expected 'split relative_path label', got {line!r}")
        split, (rel, label_text) = fields[0], rest
        try:
            label = int(label_text)
        except ValueError:
            label = -1
        if label < 0:
            raise DensenasError(f"{where}: label {label_text!r} is not a non-negative integer")
        _check_rel_path(rel, where)
        entries.append(ImageEntry(split, rel, label))
    if not entries:
        raise DensenasError(f"{path}: list has no images")
    classes = header.get("classes")
    top = max(e.label for e in entries)
    if classes is None:
        classes = [str(i) for i in range(top + 1)]
    elif not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DensenasError(f"{path}:1: header field 'classes' must be a list of names")
    elif top >= len(classes):
        raise DensenasError(f"{path}: label {top} but the header names only {len(classes)} classes")
    return ImageList(entries=entries, classes=list(classes), header=header)


# ---------------------------------------------------------------------- packing


def check_image(path: Path) -> tuple[bytes | None, str]:
    """Read an image file and decode it fully; (bytes, "") or (None, why it is unusable).

    A full decode is the only reliable way to catch a truncated JPEG, and it runs in
    threads (PIL releases the GIL while decoding).
    """
    from io import BytesIO

    from PIL import Image

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    try:
        with Image.open(BytesIO(data)) as img:
            img.load()
    except Exception as exc:  # every decoder failure means the same: skip this image
        return None, f"does not decode ({exc})"
    return data, ""


def _chunks(items: list[ImageEntry], size: int) -> Iterator[list[ImageEntry]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def pack_lmdb(
    image_path: str | os.PathLike,
    list_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str,
    workers: int | None = None,
    show_progress: bool = True,
) -> PackResult:
    """Pack the listed images of ``split`` into ``out_dir/<split>.lmdb``.

    Unusable images (missing, unreadable, not decodable) are warned about on stderr by
    path and skipped. The LMDB is written under a temporary name, verified record by
    record, and renamed into place only when complete.
    """
    from rich.progress import Progress

    from densenas.console import err, log
    from densenas.data.lmdb_store import ImageRecord, LmdbWriter, read_meta

    root = _require_dir(Path(image_path))
    image_list = read_image_list(list_path)
    entries = [e for e in image_list.entries if e.split == split]
    if not entries:
        raise DensenasError(f"{list_path}: no images in split {split!r}")
    final = Path(out_dir) / f"{split}.lmdb"
    sizes = []
    for e in entries:
        try:
            sizes.append((root / e.path).stat().st_size)
        except OSError:
            sizes.append(0)
    # original bytes plus up to two pages of overhead per record; grows if short
    map_size = sum(sizes) + len(entries) * 8192 + (64 << 20)
    workers = workers or min(8, os.cpu_count() or 1)
    skipped: list[str] = []

    def write(writer: LmdbWriter, chunk: list[ImageEntry], loaded: list[Future]) -> None:
        records = []
        for entry, fut in zip(chunk, loaded):
            data, why = fut.result()
            if data is None:
                where = str(root / entry.path)
                skipped.append(where)
                log.warning(f"skipped {where}: {why}")
            else:
                records.append(ImageRecord(label=entry.label, path=entry.path, data=data))
        writer.append(records)

    with atomic_path(final) as tmp, ThreadPoolExecutor(max_workers=workers) as pool:
        writer = LmdbWriter(tmp, map_size=map_size)
        try:
            with Progress(console=err, disable=not show_progress, transient=True) as progress:
                task = progress.add_task(f"packing {split}", total=len(entries))
                pending: tuple[list[ImageEntry], list[Future]] | None = None
                for chunk in _chunks(entries, _PACK_CHUNK):
                    futures = [pool.submit(check_image, root / e.path) for e in chunk]
                    if pending is not None:
                        write(writer, *pending)
                        progress.advance(task, len(pending[0]))
                    pending = (chunk, futures)
                if pending is not None:
                    write(writer, *pending)
                    progress.advance(task, len(pending[0]))
            if writer.count == 0:
                raise DensenasError(f"{list_path}: none of the {len(entries)} {split} images is readable")
            writer.finish(split=split, classes=image_list.classes)
        except BaseException:
            writer.close()
            raise
        meta = read_meta(tmp)
        if meta.count != writer.count:
            raise DensenasError(f"{tmp}: wrote {writer.count} images but read back {meta.count}")
    return PackResult(written=writer.count, skipped=skipped, db=final)
