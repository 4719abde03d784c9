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
    # derived ResNets classify from the last block's width; the paper measured only 512 -> 100,
    # so the other two are rows of 0 ms that say so, and the LUT covers its space
    assert summary.missing == [] and reg_summary.missing == []
    for c_in in (480, 496):
        row = plain.get(OpSignature("classifier", c_in, 100, 1, 7, 7, 32, "fp32"))
        assert row.median_ms == 0.0 and row.note.startswith("not in the paper's list: charged 0 ms")
    assert any("charged 0 ms" in n for n in plain.meta["import_notes"]) and "480, 496" in plain.meta["note"]
    plain.require(space, batch=32)


def test_a_list_that_does_not_fit_the_space_is_refused(legacy_dir: Path) -> None:
    from densenas.errors import DensenasError

    with pytest.raises(DensenasError, match=r"lat_list_resv2_32: \[1\] \(blocks\): has 20 entries, the space needs 16"):
        import_legacy(legacy_dir / "lat_list_resv2_32", SearchSpace.load("mbv2"))


@pytest.mark.parametrize("space_name,lut,list_name", [
    ("mbv2", "mbv2/paper-titanxp", "lat_list_densenas_mbv2_xp32"),
    ("resnet", "resnet/paper-titanxp", "lat_list_resv2_32"),
    ("resnet", "resnet/paper-titanxp-reg10", "lat_list_resv2_32_reg10"),
])
@pytest.mark.parametrize("num_classes", [None, 10])
def test_shipped_paper_luts_give_the_papers_chained_cost_for_any_class_count(
        legacy_dir: Path, space_name: str, lut: str, list_name: str, num_classes: int | None) -> None:
    """The search's cost tables from a shipped paper LUT, for the space's 100 classes and for
    the digits' 10: the classifier to 10 classes is charged as the list's one to 100, so
    the chained cost is the paper's formula on the paper's numbers (averaged rows aside)."""
    import torch

    from densenas.cost import CostTables, chained_cost
    from densenas.lut.store import load_lut
    from tests.cost_helpers import random_params
    from tests.test_cost import legacy_lists, paper_chained_cost

    space = SearchSpace.load(space_name)
    lists = legacy_lists(legacy_dir, list_name)
    # skip_reg off: the rows as the list has them (the ResNet space's skip_reg is what the reg10 list holds)
    tables = CostTables.build(space, "latency", lut=load_lut(lut), num_classes=num_classes, skip_reg=False)
    assert tables.classifier == pytest.approx(lists[3], rel=1e-12)
    for seed in range(2):
        params = random_params(space, seed, scale=1.5)
        got = float(chained_cost(space, tables, *params.to_tensors(dtype=torch.float64)))
        assert got == pytest.approx(paper_chained_cost(space, lists, params), rel=5e-3)


def test_predict_says_how_a_paper_lut_charges_the_classifier(tmp_path: Path) -> None:
    """A derived ResNet ending 480 wide, for 1000 classes, on the paper's list: predicted,
    with a note for the classifier the list never timed."""
    import json

    from tests.conftest import run_cli

    from tests.test_arch import RESNET

    net = RESNET.replace("[[256, 512], 'basic_block', [], 0, 1]", "[[256, 480], 'basic_block', [], 0, 1]")
    arch = tmp_path / "r.json"
    proc = run_cli("arch", "import", net, "--space", "resnet", "--classes", "1000", "--out", str(arch), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["fits_space"], proc.stdout + proc.stderr
    proc = run_cli("predict", "--arch", str(arch), "--lut", "resnet/paper-titanxp", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["latency_ms"] > 0
    assert report["notes"] == ["classifier(480->1000, s1, 7x7, b32, fp32) is charged as "
                               "classifier(480->100, s1, 7x7, b32, fp32) (the LUT has no row for 1000 classes); "
                               "that row is 0 ms: not in the paper's list: charged 0 ms (it timed the classifier "
                               "from 512 channels only)"]
    proc = run_cli("predict", "--arch", str(arch), "--lut", "resnet/paper-titanxp")
    assert "note: classifier(480->1000" in proc.stdout


def test_a_paper_lut_names_a_fix_that_exists(tmp_path: Path) -> None:
    """The paper's backend cannot be run; what lut check prints for another space measures
    that space into a new LUT on a built-in backend."""
    from densenas.profilers import list_profilers
    from tests.conftest import run_cli

    proc = run_cli("lut", "check", "resnet/paper-titanxp", "--space", "mbv2-tiny", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "fill them with: densenas profile --space mbv2-tiny --backend torch-cuda --batch 32" in proc.stdout
    assert "torch-cuda" in list_profilers() and "legacy-densenas" not in proc.stdout


def test_a_short_search_of_a_paper_space_keeps_the_spaces_warm_up_share() -> None:
    """`search --space resnet --lut resnet/paper-titanxp --epochs 2`: the space's 10 warm-up
    epochs of 70 would leave no architecture epoch; a short search keeps their share instead
    (an explicit --arch-update-epoch is still checked)."""
    from densenas.errors import DensenasError
    from densenas.search.settings import SearchOptions, fresh

    s = fresh(SearchOptions(space="resnet", lut="resnet/paper-titanxp", epochs=2, cost="latency"))
    assert (s.epochs, s.arch_update_epoch, s.lut_path.endswith("paper-titanxp@1.json")) == (2, 0, True)
    assert fresh(SearchOptions(space="resnet", lut="resnet/paper-titanxp", epochs=35)).arch_update_epoch == 10
    with pytest.raises(DensenasError, match="--arch-update-epoch 2 leaves no epoch"):
        fresh(SearchOptions(space="resnet", lut="resnet/paper-titanxp", epochs=2, arch_update_epoch=2))
