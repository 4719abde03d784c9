"""The profiling job's pure parts and its refusals, in-process (no measuring)."""

from __future__ import annotations

from pathlib import Path

import pytest

from densenas.errors import DensenasError
from densenas.lut.profile import merge_tables, parse_protocol, parse_shard, profile_space, shard_signatures
from densenas.lut.store import LatencyTable, LutRow
from densenas.profilers import hostinfo
from densenas.signature import OpSignature
from densenas.space import SearchSpace


def test_protocol_presets_and_overrides() -> None:
    assert parse_protocol(None).max_rounds == parse_protocol("default").max_rounds
    p = parse_protocol("fast,chunk_size=4,rel_iqr_target=0.1")
    assert (p.max_rounds, p.chunk_size, p.rel_iqr_target) == (3, 4, 0.1)
    with pytest.raises(DensenasError, match="unknown protocol preset 'turbo'"):
        parse_protocol("turbo")
    with pytest.raises(DensenasError, match="unknown protocol field"):
        parse_protocol("rounds=3")
    with pytest.raises(DensenasError, match="'max_rounds': 'x' is not a number"):
        parse_protocol("max_rounds=x")


def test_shards_are_deterministic_disjoint_and_cover_the_space() -> None:
    sigs = SearchSpace.load("mbv2-tiny").unique_signatures()
    parts = [shard_signatures(list(reversed(sigs)), (i, 3)) for i in (1, 2, 3)]
    assert parts == [shard_signatures(sigs, (i, 3)) for i in (1, 2, 3)]  # input order does not matter
    keys = [s.key() for part in parts for s in part]
    assert sorted(keys) == sorted(s.key() for s in sigs) and len(set(keys)) == len(keys)
    assert parse_shard("2/4") == (2, 4) and parse_shard(None) is None
    for bad in ("0/4", "5/4", "2-4"):
        with pytest.raises(DensenasError, match="--shard must be i/N"):
            parse_shard(bad)


def _existing(path: Path, **meta) -> None:
    """A LUT that matches what a default torch-cpu run records on this host (its CPU name
    and usable CPUs) except for the fields in ``meta``, so only those can differ."""
    sig = OpSignature("conv1_1", 8, 8, 1, 4, 4)
    here = {"device": hostinfo.cpu_model(), "threads": hostinfo.usable_cpus()}
    t = LatencyTable({"backend": "torch-cpu", **here, "batch": 1, "precision": "fp32", "input_size": 32, **meta})
    t.add(LutRow(sig, 0.1, 0.1, 0.0, 0.1, 0.1, samples=3))
    t.save(path)


def test_an_existing_out_measured_differently_is_refused_without_force(tmp_path: Path) -> None:
    out = tmp_path / "x.json"
    _existing(out, batch=8)
    with pytest.raises(DensenasError, match=r"x\.json exists and was measured differently: batch is 8 in .*x\.json "
                                            r"but 1 in this run.*pass --force"):
        profile_space("mbv2-tiny", "torch-cpu", out=out, protocol=parse_protocol("fast"))
    with pytest.raises(DensenasError, match=r"--resume refused: batch is 8 in .* but 1 in this run"):
        profile_space("mbv2-tiny", "torch-cpu", out=out, resume=True)
    _existing(out, input_size=224)
    with pytest.raises(DensenasError, match="input_size is 224 in .* but 32 in this run"):
        profile_space("mbv2-tiny", "torch-cpu", out=out, resume=True)


def test_merge_refuses_conflicts_and_other_fingerprints() -> None:
    sig = OpSignature("conv1_1", 8, 8, 1, 4, 4)
    meta = {"backend": "torch-cpu", "device": "AMD EPYC", "threads": 2, "batch": 1, "precision": "fp32"}
    a = LatencyTable(meta, [LutRow(sig, 0.1, 0.1, 0.0, 0.1, 0.1, samples=3)], source="a.json")
    b = LatencyTable(meta, [LutRow(sig, 0.2, 0.2, 0.0, 0.2, 0.2, samples=3)], source="b.json")
    with pytest.raises(DensenasError, match=r"1 rows conflict.*conv1_1\|8\|8\|1\|4x4\|b1\|fp32 \(a\.json: 0\.1 ms, b\.json: 0\.2 ms\)"):
        merge_tables([a, b])
    c = LatencyTable({**meta, "threads": 1}, source="c.json")
    with pytest.raises(DensenasError, match=r"cannot merge c\.json into a\.json: threads is 2 in a\.json but 1 in c\.json"):
        merge_tables([a, c])
    same = LatencyTable(meta, [LutRow(sig, 0.1, 0.1, 0.0, 0.1, 0.1, samples=3)], source="d.json")
    merged, _ = merge_tables([a, same])
    assert len(merged.rows) == 1 and merged.meta["merged_from"] == ["a.json", "d.json"]
