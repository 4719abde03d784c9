"""The latency model's hook for in-context op costs: a LUT whose refinement fitted rows'
``context_ms`` predicts with them (and without the calibration) on every path; rows
without one, or a LUT without a refinement, predict as before; both fields survive a
save and load, and bad values are refused naming the field. Also: typed metadata
leaves the shipped LUT files as they are."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from densenas.cost import CostTables, LatencyModel, arch_cost, chained_cost
from densenas.derive import choice_to_arch, derive_under_budget, predict_derived
from densenas.errors import DensenasError
from densenas.lut.meta import Calibration, Refinement
from densenas.lut.store import LatencyTable, LutRow, list_shipped, load_lut
from densenas.space import SearchSpace
from tests.cost_helpers import OVERHEAD, OFFSET, SCALE, random_params, synthetic_lut
from tests.test_cost import one_hot_params, random_choice

REFINEMENT = Refinement(method="robust fit of relative errors, ridge toward the isolated time", networks=40,
                        held_out={"mape": 3.9, "within_5pct": 0.74, "spearman": None}, prior_strength=2.0,
                        fitted_at="2026-01-01T00:00:00+00:00",
                        deployment={"network_options": {"spinning": True}, "threads": 2},
                        host_busy=0.0)


@pytest.fixture(scope="module")
def tiny() -> SearchSpace:
    return SearchSpace.load("mbv2-tiny")


def with_context(lut: LatencyTable, path: Path, *, refinement: Refinement | None = REFINEMENT) -> LatencyTable:
    """``lut`` with an in-context cost on every other row (seeded), saved to ``path`` and read back."""
    rng = random.Random(1)
    for i, key in enumerate(sorted(lut.rows)):
        if i % 2 == 0:
            lut.add(dataclasses.replace(lut.rows[key], context_ms=rng.uniform(0.01, 0.5)))
    lut.refinement = refinement
    lut.save(path)
    return load_lut(path)


def in_context_ms(row: LutRow) -> float:
    """The oracle: a row's fitted cost where it has one, else its median less the overhead."""
    return row.context_ms if row.context_ms is not None else row.median_ms - OVERHEAD


def test_a_refined_lut_predicts_with_in_context_costs_and_no_calibration(tiny, tmp_path):
    plain = synthetic_lut(tiny, tmp_path / "plain.json")
    lut = with_context(synthetic_lut(tiny, tmp_path / "lut.json"), tmp_path / "lut.json")
    assert lut.refinement == REFINEMENT and lut.calibration.scale == SCALE  # kept, but superseded
    for seed in range(3):
        choice = random_choice(tiny, seed)
        arch = choice_to_arch(tiny, choice)
        rows = [lut.get(sig) for _, _, sig in arch.layers()]
        assert any(r.context_ms is not None for r in rows) and any(r.context_ms is None for r in rows)
        c = arch_cost(arch, lut)
        assert c.total == pytest.approx(sum(in_context_ms(r) for r in rows) + OVERHEAD, rel=1e-12)
        assert c.total != pytest.approx(arch_cost(arch, plain).total)
        assert c.in_context and c.scale == 1.0 and c.network_offset == pytest.approx(OVERHEAD)
        assert "of ops in context" in c.terms()
        assert sum(b["latency_ms"] for b in c.per_block) == pytest.approx(c.total - OVERHEAD, rel=1e-12)
        # the search's tables charge the same costs: a one-hot chained cost is this network's,
        # plus what the tables charge the skipped layers the network drops
        tables = CostTables.build(tiny, "latency", lut=lut)
        chained = float(chained_cost(tiny, tables, *one_hot_params(tiny, choice).to_tensors(dtype=torch.float64)))
        skipped = [tiny.stack_signature(b, "skip_connect") for b, ops in choice.stack.items()
                   for op in ops if tiny.stack_primitives[op] == "skip_connect"]
        assert skipped
        assert chained == pytest.approx(c.total + sum(in_context_ms(lut.get(s)) for s in skipped), rel=1e-12)


def test_in_context_costs_without_a_refinement_change_nothing(tiny, tmp_path):
    plain = synthetic_lut(tiny, tmp_path / "plain.json")
    unrefined = with_context(synthetic_lut(tiny, tmp_path / "ctx.json"), tmp_path / "ctx.json", refinement=None)
    assert unrefined.refinement is None and any(r.context_ms is not None for r in unrefined.rows.values())
    arch = choice_to_arch(tiny, random_choice(tiny, 4))
    c = arch_cost(arch, unrefined)
    ops = [plain.latency_ms(sig) - OVERHEAD for _, _, sig in arch.layers()]
    assert c.total == arch_cost(arch, plain).total
    assert c.total == pytest.approx(SCALE * sum(ops) + OVERHEAD + OFFSET, rel=1e-12) and not c.in_context
    assert float(CostTables.build(tiny, "latency", lut=unrefined).head[0].sum()) == \
        float(CostTables.build(tiny, "latency", lut=plain).head[0].sum())


def test_the_budget_derivation_and_predict_use_the_in_context_costs(tiny, tmp_path):
    lut = with_context(synthetic_lut(tiny, tmp_path / "lut.json"), tmp_path / "lut.json")
    tables = CostTables.build(tiny, "latency", lut=lut)
    for seed in range(2):
        arch = derive_under_budget(tiny, random_params(tiny, seed, 2.0), tables, math.inf)
        expected = sum(in_context_ms(lut.get(sig)) for _, _, sig in arch.layers()) + OVERHEAD
        assert arch.extra["derivation"]["cost"] == pytest.approx(expected, rel=1e-12)
        report = predict_derived(arch, lut)
        assert report["latency_ms"] == pytest.approx(expected, rel=1e-12) and report["in_context"] is True


def test_predict_cli_reports_the_in_context_prediction(tiny, tmp_path):
    lut = with_context(synthetic_lut(tiny, tmp_path / "lut.json"), tmp_path / "lut.json")
    arch = choice_to_arch(tiny, random_choice(tiny, 2))
    arch.save(tmp_path / "arch.json")
    r = subprocess.run([sys.executable, "-m", "densenas", "predict", "--arch", str(tmp_path / "arch.json"),
                        "--lut", str(tmp_path / "lut.json"), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    expected = sum(in_context_ms(lut.get(sig)) for _, _, sig in arch.layers()) + OVERHEAD
    assert d["latency_ms"] == pytest.approx(expected, rel=1e-12) and d["in_context"] is True


def test_context_costs_and_the_refinement_survive_save_and_load(tiny, tmp_path):
    lut = with_context(synthetic_lut(tiny, tmp_path / "lut.json"), tmp_path / "lut.json")
    data = json.loads((tmp_path / "lut.json").read_text())
    fitted = [r for r in data["rows"] if "context_ms" in r]
    assert 0 < len(fitted) < len(data["rows"])  # omitted where there is none
    assert data["meta"]["refinement"] == REFINEMENT.to_lut()
    back = LatencyTable.load(lut.save(tmp_path / "again.json"))
    assert back.rows == lut.rows and back.refinement == REFINEMENT
    assert (tmp_path / "again.json").read_text() == (tmp_path / "lut.json").read_text()
    back.refinement = None
    assert "refinement" not in back.to_json_dict()["meta"]
    assert not LatencyModel(back).refined


@pytest.mark.parametrize("edit,match", [
    (lambda d: d["rows"][0].update(context_ms=-0.1), r"rows\[0\]: field 'context_ms' must be a finite non-negative"),
    (lambda d: d["rows"][1].update(context_ms="fast"), r"rows\[1\]: field 'context_ms'"),
    (lambda d: d["meta"]["refinement"].update(networks=-1), r"field 'meta\.refinement\.networks': input should be"),
    (lambda d: d["meta"]["refinement"].update(held_out={"mape": "low"}), r"field 'meta\.refinement\.held_out\.mape'"),
    (lambda d: d["meta"]["refinement"].update(netwroks=3), r"field 'meta\.refinement\.netwroks': extra inputs"),
    (lambda d: d["meta"]["calibration"].update(scale=0), r"field 'meta\.calibration\.scale': input should be greater"),
    (lambda d: d["meta"].update(threads="2"), r"field 'meta\.threads'"),
    (lambda d: d["meta"].update(deployment={"network_option": {}}), r"field 'meta\.deployment\.network_option': extra"),
    (lambda d: d["meta"].update(deployment={"network_options": []}), r"field 'meta\.deployment\.network_options'"),
    (lambda d: d["meta"]["refinement"]["deployment"].update(threads=0), r"field 'meta\.refinement\.deployment\.threads'"),
])
def test_bad_in_context_fields_are_refused_naming_the_file_and_field(tiny, tmp_path, edit, match):
    with_context(synthetic_lut(tiny, tmp_path / "lut.json"), tmp_path / "lut.json")
    data = json.loads((tmp_path / "lut.json").read_text())
    edit(data)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DensenasError, match=rf"bad\.json: {match}"):
        LatencyTable.load(tmp_path / "bad.json")


def test_a_calibration_given_as_a_mapping_is_validated(tiny, tmp_path):
    lut = synthetic_lut(tiny, tmp_path / "lut.json")
    with pytest.raises(DensenasError, match=r"field 'meta\.calibration\.scael'"):
        lut.calibration = {"scael": 1.2}
    lut.calibration = Calibration(scale=1.5, network_offset_ms=0.1)
    assert LatencyModel(lut).network_ms(2.0, 3) == pytest.approx(1.5 * 2.0 + OVERHEAD + 0.1)


def test_shipped_luts_read_and_rewrite_unchanged():
    shipped = list_shipped()
    assert shipped
    for entry in shipped:
        assert "error" not in entry, entry
        text = Path(entry["path"]).read_text()
        assert LatencyTable.loads(text, source=entry["path"]).dumps() == text, entry["name"]
