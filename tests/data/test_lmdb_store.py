"""The LMDB record format and the dataset reading it: explicit bytes, never pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import lmdb
import pytest

from densenas.data.lmdb_store import (
    ImageRecord,
    LmdbImageDataset,
    LmdbWriter,
    decode_record,
    encode_record,
    read_meta,
)
from densenas.errors import DensenasError


def _write_store(path: Path, records: list[ImageRecord], classes: list[str]) -> None:
    writer = LmdbWriter(path, map_size=1 << 20)
    writer.append(records)
    writer.finish(split="train", classes=classes)


def _png(color: int) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (5, 3), (color, 0, 255 - color)).save(buf, format="PNG")
    return buf.getvalue()


def test_record_round_trips_label_path_and_bytes() -> None:
    rec = ImageRecord(label=42, path="train/ü dir/x.jpg", data=b"\x00\xffbytes")
    payload = encode_record(rec)
    assert decode_record(payload) == rec
    assert payload.startswith(b"DNIR")  # our explicit layout, not a pickle stream


@pytest.mark.parametrize("payload", [b"", b"DNIR", pickle.dumps({"a": 1}), b"XXXX" + bytes(20)])
def test_malformed_record_is_a_user_error(payload: bytes) -> None:
    with pytest.raises(DensenasError, match="rec 7"):
        decode_record(payload, where="rec 7")


def test_writer_grows_the_map_and_dataset_reads_images(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    records = [ImageRecord(i % 2, f"c{i % 2}/{i}.png", _png(i * 20) + bytes(300_000)) for i in range(8)]
    _write_store(path, records, ["a", "b"])  # 2.4 MB into a 1 MiB map: it must grow
    ds = LmdbImageDataset(path)
    assert len(ds) == 8 and ds.classes == ["a", "b"]
    assert [ds.record(i) for i in range(8)] == records
    image, label = ds[3]
    assert image.size == (5, 3) and image.mode == "RGB" and label == 1
    with pytest.raises(IndexError):
        ds.record(8)


def test_dataset_pickles_without_its_environment(tmp_path: Path) -> None:
    path = tmp_path / "s.lmdb"
    _write_store(path, [ImageRecord(0, "a.png", _png(1))], ["only"])
    ds = LmdbImageDataset(path)
    ds.record(0)  # opens the environment in this process
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker receives
    assert clone._env is None
    assert clone.record(0) == ds.record(0)


def test_unreadable_or_foreign_lmdb_is_named(tmp_path: Path) -> None:
    with pytest.raises(DensenasError, match="missing.lmdb: no such LMDB file"):
        read_meta(tmp_path / "missing.lmdb")
    garbage = tmp_path / "garbage.lmdb"
    garbage.write_bytes(b"not an lmdb" * 500)
    with pytest.raises(DensenasError, match="garbage.lmdb: not a readable LMDB"):
        LmdbImageDataset(garbage)
    foreign = tmp_path / "foreign.lmdb"
    env = lmdb.open(str(foreign), subdir=False, lock=False, map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"0000000000", b"whatever")
    env.close()
    with pytest.raises(DensenasError, match="foreign.lmdb: LMDB has no densenas meta record"):
        LmdbImageDataset(foreign)


def test_same_file_read_by_two_datasets_and_a_forked_child(tmp_path: Path) -> None:
    import os

    path = tmp_path / "s.lmdb"
    _write_store(path, [ImageRecord(0, "a.png", _png(1))], ["only"])
    first, second = LmdbImageDataset(path), LmdbImageDataset(path)
    assert first.record(0) == second.record(0)  # one environment, shared
    assert read_meta(path).count == 1  # while it is open
    pid = os.fork()
    if pid == 0:  # a DataLoader worker forked after the parent opened the file
        code = 1
        try:
            code = 0 if LmdbImageDataset(path).record(0) == first.record(0) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert first.record(0).path == "a.png"  # the parent's environment still works
