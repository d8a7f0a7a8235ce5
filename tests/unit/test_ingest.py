from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from churn.ingest import land_snapshot, read_snapshot_file, read_table, resolve_score_date
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


def test_a_score_date_placeholder_reads_each_dates_own_snapshot():
    source = parse_source("/data/{score_date}/training.csv", date(2026, 11, 20))
    assert source == FileSource(Path("/data/2026-11-20/training.csv"), "csv")
    with pytest.raises(SourceError, match="needs a score date"):
        parse_source("/data/{score_date}/training.csv")


def test_a_file_is_landed_byte_for_byte_with_its_checksum(source_files, tmp_path: Path):
    import hashlib

    original = source_files["training"]
    landed = land_snapshot(parse_source(str(original)), tmp_path / "raw", "training")
    copy = Path(landed["path"])
    assert copy == tmp_path / "raw" / "training.csv" and landed["format"] == "csv"
    assert copy.read_bytes() == original.read_bytes()
    assert landed["sha256"] == hashlib.sha256(original.read_bytes()).hexdigest()
    assert landed["bytes"] == original.stat().st_size


def test_csv_is_read_as_the_text_it_holds(source_files):
    frame = read_snapshot_file(source_files["training"], "csv")
    assert len(frame) == 3000
    assert all(pd.api.types.is_string_dtype(dtype) for dtype in frame.dtypes)
    assert " " in set(frame["TotalCharges"])  # the public file's blank, kept for validation to judge


def test_missing_file_stops_ingest_with_its_path_and_lands_nothing(tmp_path: Path):
    with pytest.raises(SourceError, match=r"not found: .*absent\.csv"):
        land_snapshot(parse_source(str(tmp_path / "absent.csv")), tmp_path / "raw", "training")
    assert not (tmp_path / "raw").exists()


def test_garbage_parquet_is_reported_as_unreadable(tmp_path: Path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(SourceError, match=r"not a readable Parquet file"):
        read_snapshot_file(path, "parquet")


def test_sql_table_source_is_landed_as_parquet(tmp_path: Path, snapshots):
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    engine = sa.create_engine(url)
    snapshots.scoring.to_sql("active_customers", engine, index=False)
    engine.dispose()
    landed = land_snapshot(
        parse_source("sql://crm/active_customers"), tmp_path / "raw", "scoring", sqlalchemy_url=url
    )
    assert landed["format"] == "parquet" and landed["source"] == "table active_customers via connection crm"
    assert len(read_snapshot_file(Path(landed["path"]), "parquet")) == 600
    with pytest.raises(SourceError, match="table not found"):
        read_table(parse_source("sql://crm/nobody"), url)


def test_score_date_prefers_the_trigger_then_the_logical_date():
    run_after = datetime(2026, 11, 29, 2, 0, tzinfo=UTC)
    assert resolve_score_date("2026-11-01", None, run_after) == date(2026, 11, 1)
    assert resolve_score_date(None, datetime(2026, 11, 28, 2, tzinfo=UTC), run_after) == date(2026, 11, 28)
    assert resolve_score_date(None, None, run_after) == date(2026, 11, 29)
    with pytest.raises(ValueError, match="not a date"):
        resolve_score_date("29/11/2026", None, run_after)


def test_run_ingest_lands_both_snapshots_and_records_them(trained_run):
    run, _ = trained_run
    assert run["ingest"]["training"]["format"] == run["ingest"]["scoring"]["format"] == "csv"
    assert len(run["ingest"]["scoring"]["sha256"]) == 64
    assert Path(run["run_dir"], "manifests", "ingest.json").is_file()
    assert Path(run["ingest"]["scoring"]["path"]).is_file()
