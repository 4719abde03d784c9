"""LUTs as pandas tables: exact round trips, CSV and Parquet export, diff and validate frames."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from densenas.errors import DensenasError
from densenas.lut.frames import diff_frame, row_columns, table_from_frame, table_to_frame, validation_frame
from densenas.lut.store import LatencyTable, load_lut
from tests.conftest import assert_user_error, run_cli


@pytest.mark.parametrize("name", ["mbv2/onnxruntime-cpu", "resnet/paper-titanxp"])
def test_frame_round_trip_is_exact(name: str) -> None:
    table = load_lut(name)
    df = table_to_frame(table)
    assert list(df.columns) == row_columns() and df.index.name == "key"
    assert list(df.index) == sorted(table.rows) and len(df) == len(table.rows)
    assert df.loc[next(iter(sorted(table.rows))), "median_ms"] == table.rows[sorted(table.rows)[0]].median_ms
    again = LatencyTable.from_frame(df)
    assert again.rows == table.rows and again.meta == table.meta
    assert table.to_frame().equals(df)


def test_from_frame_validates_rows_like_a_lut_file() -> None:
    df = table_to_frame(load_lut("mbv2-tiny/onnxruntime-cpu"))
    bad = df.copy()
    bad.iloc[3, bad.columns.get_loc("median_ms")] = -1.0
    with pytest.raises(DensenasError, match=r"nb: row 3: field 'median_ms' must be a finite non-negative"):
        table_from_frame(bad, source="nb")
    bad = df.copy()
    bad.iloc[0, bad.columns.get_loc("op")] = "exec_me"
    with pytest.raises(DensenasError, match="exec_me"):
        table_from_frame(bad, source="nb")
    with pytest.raises(DensenasError, match="column 'median_ms' is missing"):
        table_from_frame(df.drop(columns=["median_ms"]), source="nb")


def test_export_parquet_reads_back_to_the_same_rows(tmp_path: Path) -> None:
    proc = run_cli("lut", "export", "mbv2/onnxruntime-cpu", "--to", "parquet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = tmp_path / "mbv2-onnxruntime-cpu@2.parquet"
    df = pd.read_parquet(written)
    table = load_lut("mbv2/onnxruntime-cpu")
    assert table_from_frame(df).rows == table.rows
    assert df.attrs["meta"]["backend"] == "onnxruntime"  # the provenance travels with the rows
    assert [p.name for p in tmp_path.iterdir()] == [written.name]  # no temporary file left


def test_export_csv_keeps_every_row(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    proc = run_cli("lut", "export", "mbv2-tiny/torch-cpu", "--to", "csv", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    table = load_lut("mbv2-tiny/torch-cpu")
    assert json.loads(proc.stdout)["rows"] == len(table.rows)
    df = pd.read_csv(out, index_col="key", keep_default_na=False, na_values=[""])
    again = table_from_frame(df, table.meta)
    assert again.rows.keys() == table.rows.keys()
    for key, row in table.rows.items():
        assert again.rows[key].median_ms == pytest.approx(row.median_ms, rel=1e-15)
        assert again.rows[key].samples == row.samples and again.rows[key].signature == row.signature


def test_export_refuses_an_unknown_format(tmp_path: Path) -> None:
    assert_user_error(run_cli("lut", "export", "mbv2/onnxruntime-cpu", "--to", "xlsx", cwd=tmp_path), "--to", "xlsx")
    assert not list(tmp_path.iterdir())


def test_diff_frame_and_csv(tmp_path: Path) -> None:
    a, b = load_lut("mbv2/onnxruntime-cpu"), load_lut("mbv2/paper-titanxp")
    df = diff_frame(a, b, ignore_run=True)
    both = df[df["in"] == "both"]
    assert len(both) == df.attrs["summary"]["common"] > 0
    assert (both["ratio"] == both["b_ms"] / both["a_ms"]).all()
    assert {"both", "b"} <= set(df["in"]) <= {"both", "a", "b"} and df.loc[df["in"] != "both", "ratio"].isna().all()
    csv = tmp_path / "d.csv"
    proc = run_cli("lut", "diff", "mbv2/onnxruntime-cpu", "mbv2/paper-titanxp", "--ignore-batch", "--csv", str(csv), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["csv"] == str(csv)
    back = pd.read_csv(csv, index_col="key")
    assert list(back.index) == list(df.index) and list(back.columns) == ["a_ms", "b_ms", "ratio", "in"]


def test_validation_frame_has_one_row_per_network() -> None:
    from densenas.space import SearchSpace
    from densenas.lut.networks import accuracy, sample_archs
    from densenas.lut.validate import ValidationResult

    archs = sample_archs(SearchSpace.load("mbv2-tiny"), 3, seed=0)
    result = ValidationResult(
        lut="l.json", space="mbv2-tiny", backend="torch-cpu", device="cpu", threads=1, batch=1, precision="fp32",
        seed=0, archs=archs, measured_ms=[1.0, 2.0, 4.0], predicted_ms=[1.1, 1.8, 4.0], sum_of_ops_ms=[1.0, 1.7, 3.9],
        overhead_ms=0.1, before=accuracy([1.1, 1.8, 4.0], [1.0, 2.0, 4.0]),
    )
    df = validation_frame(result)
    assert list(df["measured_ms"]) == [1.0, 2.0, 4.0] and list(df["predicted_ms"]) == [1.1, 1.8, 4.0]
    assert df["error_pct"].round(6).tolist() == [10.0, -10.0, 0.0]
    assert list(df["net_config"]) == [a.to_dict()["net_config"] for a in archs]
    assert df.attrs["space"] == "mbv2-tiny"
