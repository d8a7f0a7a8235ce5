from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from churn.ingest import land_snapshot, read_source, resolve_score_date
from churn.settings import PROJECT_DIR
from churn.sources import FileSource, SourceError, TableSource, parse_source


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("/data/train.csv", FileSource(Path("/data/train.csv"), "csv")),
        ("file:///data/train.parquet", FileSource(Path("/data/train.parquet"), "parquet")),
        ("data/train.CSV", FileSource(PROJECT_DIR / "data/train.CSV", "csv")),
        ("sql://crm/customers", TableSource("crm", None, "customers")),
        ("sql://crm/analytics.customers", TableSource("crm", "analytics", "customers")),
    ],
)
def test_source_references_are_understood(spec, expected):
    assert parse_source(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("s3://bucket/train.csv", "unknown scheme"),
        ("/data/train.xlsx", "must end in .csv or .parquet"),
        ("sql://crm/1customers", "not a valid SQL identifier"),
    ],
)
def test_bad_source_references_say_what_is_wrong(spec, message):
    with pytest.raises(SourceError, match=message):
        parse_source(spec)


def test_csv_is_landed_as_the_text_it_holds(source_files, tmp_path: Path):
    rows = land_snapshot(parse_source(str(source_files["training"])), tmp_path / "raw.parquet")
    landed = pd.read_parquet(tmp_path / "raw.parquet")
    assert rows == len(landed) == 3000
    assert all(pd.api.types.is_string_dtype(dtype) for dtype in landed.dtypes)
    assert " " in set(landed["TotalCharges"])  # the public file's blank, kept for validation to judge


def test_missing_file_is_named(tmp_path: Path):
    with pytest.raises(SourceError, match=r"not found: .*absent\.csv"):
        read_source(parse_source(str(tmp_path / "absent.csv")))


def test_garbage_parquet_is_reported_as_unreadable(tmp_path: Path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(SourceError, match=r"cannot read parquet file .*broken\.parquet"):
        read_source(parse_source(str(path)))


def test_sql_table_source_reads_through_sqlalchemy(tmp_path: Path, snapshots):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    snapshots.scoring.to_sql("active_customers", engine, index=False)
    engine.dispose()
    frame = read_source(parse_source("sql://crm/active_customers"), sqlalchemy_url=url)
    assert len(frame) == 600
    with pytest.raises(SourceError, match="table not found"):
        read_source(parse_source("sql://crm/nobody"), sqlalchemy_url=url)


def test_failed_landing_leaves_no_half_written_file(tmp_path: Path):
    destination = tmp_path / "raw" / "training.parquet"
    with pytest.raises(SourceError):
        land_snapshot(parse_source(str(tmp_path / "absent.csv")), destination)
    assert not destination.exists()
    assert not list(tmp_path.rglob("*.partial"))


def test_score_date_prefers_the_trigger_then_the_logical_date():
    run_after = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    assert resolve_score_date("2026-11-01", None, run_after) == date(2026, 11, 1)
    assert resolve_score_date(None, datetime(2026, 11, 28, 2, tzinfo=UTC), run_after) == date(2026, 11, 28)
    assert resolve_score_date(None, None, run_after) == date(2026, 11, 29)
    with pytest.raises(ValueError, match="not a date"):
        resolve_score_date("29/11/2026", None, run_after)


def test_run_ingest_lands_both_snapshots_and_records_them(trained_run):
    run, _ = trained_run
    assert run["ingest"]["training"]["rows"] == 3000
    assert run["ingest"]["scoring"]["rows"] == 600
    assert Path(run["run_dir"], "manifests", "ingest.json").is_file()
    assert Path(run["ingest"]["scoring"]["path"]).is_file()
