"""Importing the paper's latency lists: every number lands on the signature it measured."""

from __future__ import annotations

from pathlib import Path

import pytest

from densenas.literal import parse_literal
from densenas.lut.legacy import import_legacy
from densenas.lut.store import LatencyTable
from densenas.signature import OpSignature
from densenas.space import SearchSpace


def _flatten(x: object) -> list[float]:
    return [v for item in x for v in _flatten(item)] if isinstance(x, list) else [float(x)]  # type: ignore[arg-type]


def _sum_of_rows(t: LatencyTable) -> float:
    return sum(r.median_ms * r.count for r in t.rows.values())


def test_mbv2_list_maps_onto_the_ported_space(legacy_dir: Path, tmp_path: Path) -> None:
    space = SearchSpace.load("mbv2")
    path = legacy_dir / "lat_list_densenas_mbv2_xp32"
    table, summary = import_legacy(path, space)
    assert (table.backend, table.device, table.batch, table.precision, table.input_size) == (
        "legacy-densenas", "NVIDIA TITAN Xp", 32, "fp32", 224)

    # the stem: one number for conv3x3 + the first mbconv_k3_t1, kept whole on the first row
    stem, first_mb = space.stem_signatures()
    assert table.latency_ms(stem.with_run(32, "fp32")) == 2.130230027015763
    assert table.latency_ms(first_mb.with_run(32, "fp32")) == 0.0
    assert "included in stem_relu6" in table.get(first_mb.with_run(32, "fp32")).note

    # block 1, head branch 0 (from block 0), mbconv_k3_t3: 16 -> 24, stride 2, at 112x112
    head = OpSignature("mbconv_k3_t3", 16, 24, 2, 112, 112, 32, "fp32")
    assert space.head_signature(1, 0, "mbconv_k3_t3").with_run(32, "fp32") == head
    assert table.latency_ms(head) == 2.0424278577168784

    # block 1's three stacked layers share one signature: the row keeps their mean and count
    layers = (1.6153342073613948, 1.6315834690826108, 1.6260789139102203)
    stack = table.get(OpSignature("mbconv_k3_t3", 24, 24, 1, 56, 56, 32, "fp32"))
    assert stack is not None and stack.count == 3
    assert stack.median_ms == sum(layers) / 3 and stack.mean_ms == sum(layers) / 3

    assert table.latency_ms(space.classifier_signature().with_run(32, "fp32")) == 0.4041198769001046
    assert table.latency_ms(space.final_signature(16).with_run(32, "fp32")) == 0.3001111926454486

    # nothing lost: the rows (mean x count) add up to the whole list, and the space is covered
    numbers = _flatten(parse_literal(path.read_text()))
    assert summary.numbers == len(numbers) == 647
    assert _sum_of_rows(table) == pytest.approx(sum(numbers), rel=1e-12)
    table.require(space, batch=32)
    # blocks 14-16 carry 3 stacked layers in the list but none in the space: imported, and said so
    assert len(summary.extra) == 21 and "mbconv_k3_t3|320|320|1|7x7|b32|fp32" in summary.extra
    assert any("block 14" in n for n in summary.notes)

    saved = LatencyTable.load(table.save(tmp_path / "mbv2.json"))
    assert saved.rows == table.rows and saved.meta["source"]["file"] == path.name


def test_resnet_lists_including_reg10(legacy_dir: Path) -> None:
    space = SearchSpace.load("resnet")
    plain, summary = import_legacy(legacy_dir / "lat_list_resv2_32", space)
    reg, reg_summary = import_legacy(legacy_dir / "lat_list_resv2_32_reg10", space)
    stem = space.stem_signatures()
    assert len(stem) == 1 and plain.latency_ms(stem[0].with_run(32, "fp32")) == 0.7470053614992084
    head = OpSignature("basic_block", 32, 48, 2, 112, 112, 32, "fp32")
    assert plain.latency_ms(head) == 1.7158220271871547
    assert plain.latency_ms(space.classifier_signature().with_run(32, "fp32")) == 0.19902790435636888

    # block 4 (72 wide, 28x28) has 5 stacked layers of basic_block and skip_connect
    basic = plain.get(OpSignature("basic_block", 72, 72, 1, 28, 28, 32, "fp32"))
    assert basic.count == 5
    five = (0.6160835545472425, 0.6116041270169345, 0.6122468938731184, 0.6109231168573552, 0.6104896766970856)
    assert basic.median_ms == sum(five) / 5
    skip_sig = OpSignature("skip_connect", 72, 72, 1, 28, 28, 32, "fp32")
    # reg10: skip layers charged a tenth of the first op (per layer, so also on the mean)
    assert reg.latency_ms(skip_sig) == pytest.approx(basic.median_ms / 10, rel=1e-12)
    assert "reg10" in reg.get(skip_sig).note and "reg10" in reg.meta["note"]
    assert plain.latency_ms(skip_sig) < 0.01

    numbers = _flatten(parse_literal((legacy_dir / "lat_list_resv2_32").read_text()))
    assert _sum_of_rows(plain) == pytest.approx(sum(numbers), rel=1e-12)
    # derived ResNets classify from the last block's width; the paper measured only 512 -> 100
    assert summary.missing == ["classifier|480|100|1|7x7|b32|fp32", "classifier|496|100|1|7x7|b32|fp32"]
    assert reg_summary.missing == summary.missing


def test_a_list_that_does_not_fit_the_space_is_refused(legacy_dir: Path) -> None:
    from densenas.errors import DensenasError

    with pytest.raises(DensenasError, match=r"lat_list_resv2_32: \[1\] \(blocks\): has 20 entries, the space needs 16"):
        import_legacy(legacy_dir / "lat_list_resv2_32", SearchSpace.load("mbv2"))
