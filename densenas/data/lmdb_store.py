"""Images packed into one LMDB file, read back as a map-style dataset.

Each record holds the ORIGINAL image file bytes with its integer label and relative
path, in an explicit binary layout (never pickle: the paper's code pickled into LMDB,
and a file a user hands us must never be able to run code). Keys are zero-padded
indices; one meta record (JSON) holds the format version, split, count and classes.

An LMDB here is a single file (``subdir=False``) so it can be written under a temporary
name and renamed into place, and it is read without a lock file because it is never
modified after that rename. This module imports no torch, so the CLI tools stay fast.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from densenas.errors import DensenasError

FORMAT = "densenas.lmdb"
FORMAT_VERSION = 1
META_KEY = b"__meta__"
KEY_WIDTH = 10

# magic, format version, label (int32), path length (uint32); then path (UTF-8), then image
_RECORD_MAGIC = b"DNIR"
_RECORD_HEAD = struct.Struct("<4sBiI")


@dataclass(frozen=True)
class ImageRecord:
    """One packed image: its label, its path relative to the image root, its file bytes."""

    label: int
    path: str
    data: bytes


@dataclass(frozen=True)
class StoreMeta:
    """The meta record: what a reader needs before touching any image."""

    split: str
    count: int
    classes: list[str]


def record_key(index: int) -> bytes:
    """The key of the ``index``-th record; zero-padded so keys sort in index order."""
    return f"{index:0{KEY_WIDTH}d}".encode("ascii")


def encode_record(record: ImageRecord) -> bytes:
    path = record.path.encode("utf-8")
    head = _RECORD_HEAD.pack(_RECORD_MAGIC, FORMAT_VERSION, record.label, len(path))
    return head + path + record.data


def decode_record(buf: bytes | memoryview, *, where: str = "record") -> ImageRecord:
    """Parse a record; a malformed one is a DensenasError naming ``where``."""
    buf = bytes(buf)
    if len(buf) < _RECORD_HEAD.size:
        raise DensenasError(f"{where}: truncated record ({len(buf)} bytes)")
    magic, version, label, path_len = _RECORD_HEAD.unpack_from(buf)
    if magic != _RECORD_MAGIC or version != FORMAT_VERSION:
        raise DensenasError(f"{where}: not a densenas image record (format {version!r})")
    start = _RECORD_HEAD.size
    if start + path_len > len(buf):
        raise DensenasError(f"{where}: truncated record (path runs past the end)")
    path = buf[start : start + path_len].decode("utf-8")
    return ImageRecord(label=label, path=path, data=buf[start + path_len :])


def encode_meta(meta: StoreMeta) -> bytes:
    return json.dumps(
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "split": meta.split,
            "count": meta.count,
            "classes": meta.classes,
            "key_width": KEY_WIDTH,
        }
    ).encode("utf-8")


def decode_meta(buf: bytes | None, *, where: str) -> StoreMeta:
    if buf is None:
        raise DensenasError(
            f"{where}: LMDB has no densenas meta record (make it with `densenas data pack-lmdb`)"
        )
    try:
        obj = json.loads(bytes(buf).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DensenasError(f"{where}: meta record is not JSON ({exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise DensenasError(f"{where}: meta record is not a {FORMAT} meta record")
    if obj.get("version") != FORMAT_VERSION or obj.get("key_width") != KEY_WIDTH:
        raise DensenasError(
            f"{where}: {FORMAT} version {obj.get('version')!r} is not supported "
            f"(this densenas reads version {FORMAT_VERSION})"
        )
    count, classes, split = obj.get("count"), obj.get("classes"), obj.get("split")
    if not isinstance(count, int) or count < 0:
        raise DensenasError(f"{where}: meta field 'count' must be a non-negative integer")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DensenasError(f"{where}: meta field 'classes' must be a list of names")
    if not isinstance(split, str):
        raise DensenasError(f"{where}: meta field 'split' must be a string")
    return StoreMeta(split=split, count=count, classes=list(classes))


def open_reader(path: str | os.PathLike) -> lmdb.Environment:
    """Open a packed LMDB read-only; an unreadable file is a DensenasError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DensenasError(f"{path}: no such LMDB file")
    try:
        return lmdb.open(
            str(path),
            subdir=False,
            readonly=True,
            lock=False,
            readahead=False,
            meminit=False,
            max_readers=8,
        )
    except lmdb.Error as exc:
        raise DensenasError(f"{path}: not a readable LMDB ({exc})") from None


# One read-only environment per file per process: py-lmdb refuses a second open of the
# same file in a process, and one inherited over fork must not be used by the child.
_READERS: dict[tuple[int, int], tuple[int, lmdb.Environment]] = {}


def _file_id(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        raise DensenasError(f"{path}: no such LMDB file") from None
    return st.st_dev, st.st_ino


def shared_reader(path: str | os.PathLike) -> lmdb.Environment:
    """This process's read-only environment for ``path``, opened on first use.

    Keyed by the file's identity, so a renamed file keeps its environment; an
    environment inherited from a parent process (a forked DataLoader worker) is
    closed in the child and opened afresh.
    """
    path = Path(path)
    key = _file_id(path)
    entry = _READERS.get(key)
    if entry is not None and entry[0] == os.getpid():
        return entry[1]
    if entry is not None:
        entry[1].close()  # the child's copy only; the parent's stays open
    env = open_reader(path)
    _READERS[key] = (os.getpid(), env)
    return env


def read_meta(path: str | os.PathLike) -> StoreMeta:
    """The meta record of a packed LMDB, checked against the number of records."""
    path = Path(path)
    shared = _file_id(path) in _READERS  # then a second open would be refused
    env = shared_reader(path) if shared else open_reader(path)
    try:
        with env.begin() as txn:
            meta = decode_meta(txn.get(META_KEY), where=str(path))
        entries = env.stat()["entries"]
    finally:
        if not shared:
            env.close()
    if entries != meta.count + 1:
        raise DensenasError(
            f"{path}: meta says {meta.count} images but the LMDB holds {entries - 1} records"
        )
    return meta


class LmdbWriter:
    """Appends records to a fresh single-file LMDB, checking each batch by reading it back.

    Batches are committed one transaction each; after a commit every record of the batch
    is read back and compared byte for byte with what was handed in, so a packed file is
    known to be good before it is renamed into place. The map grows when it fills.
    """

    def __init__(self, path: str | os.PathLike, *, map_size: int) -> None:
        self.path = Path(path)
        self.count = 0
        self._env = lmdb.open(
            str(self.path),
            subdir=False,
            lock=False,
            map_size=max(map_size, 1 << 20),
            meminit=False,
            readahead=False,
            sync=False,
        )

    def append(self, records: list[ImageRecord]) -> None:
        if not records:
            return
        first = self.count
        payloads = [encode_record(r) for r in records]
        self._put_all([(record_key(first + i), p) for i, p in enumerate(payloads)])
        with self._env.begin() as txn:
            for i, payload in enumerate(payloads):
                stored = txn.get(record_key(first + i))
                if stored is None or bytes(stored) != payload:
                    raise DensenasError(
                        f"{self.path}: record for {records[i].path} did not read back intact"
                    )
        self.count += len(records)

    def finish(self, *, split: str, classes: list[str]) -> None:
        """Write the meta record, flush to disk and close."""
        meta = encode_meta(StoreMeta(split=split, count=self.count, classes=classes))
        self._put_all([(META_KEY, meta)])
        self._env.sync(True)
        self._env.close()

    def close(self) -> None:
        self._env.close()

    def _put_all(self, items: list[tuple[bytes, bytes]]) -> None:
        while True:
            try:
                with self._env.begin(write=True) as txn:
                    for key, value in items:
                        txn.put(key, value, overwrite=True)
                return
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)


def decode_image(data: bytes) -> Any:
    """Decode image file bytes into an RGB PIL image (the same as ImageFolder's loader)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


class LmdbImageDataset:
    """A map-style dataset over a packed LMDB: ``(transform(image), label)`` per index.

    The LMDB environment is opened lazily in each process that reads (an environment
    must not cross a fork) and shared by every dataset on the same file in that
    process, so the dataset can be handed to DataLoader workers and built twice.
    """

    def __init__(
        self, path: str | os.PathLike, transform: Callable[[Any], Any] | None = None
    ) -> None:
        self.path = Path(path)
        meta = read_meta(self.path)
        self.split = meta.split
        self.classes = meta.classes
        self.transform = transform
        self._count = meta.count
        self._env: lmdb.Environment | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self._count

    def record(self, index: int) -> ImageRecord:
        """The raw record at ``index``: label, relative path and original file bytes."""
        if not 0 <= index < self._count:
            raise IndexError(f"index {index} out of range for {self._count} images")
        if self._env is None or self._pid != os.getpid():
            self._env = shared_reader(self.path)
            self._pid = os.getpid()
        with self._env.begin(buffers=True) as txn:
            buf = txn.get(record_key(index))
            if buf is None:
                raise DensenasError(f"{self.path}: record {index} is missing")
            return decode_record(buf, where=f"{self.path} record {index}")

    def __getitem__(self, index: int) -> tuple[Any, int]:
        rec = self.record(index)
        try:
            image = decode_image(rec.data)
        except Exception as exc:  # any decoder failure: name the image, not PIL's internals
            raise DensenasError(f"{self.path}: image {rec.path} does not decode ({exc})") from None
        if self.transform is not None:
            image = self.transform(image)
        return image, rec.label

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_env"] = None
        state["_pid"] = None
        return state
