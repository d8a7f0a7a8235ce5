"""Values kept exactly as given, and every bad value a named problem: real files (CSV, Parquet,
an exported SQL table) that used to end in a raw Python error, be padded, rounded or scanned
only in part are stopped at ingest or validation with the file, column, rows and rule."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from churn.contract import load_contract
from churn.ingest import land_snapshot
from churn.sources import SourceError, parse_source
from churn.storage import read_parquet, read_snapshot_chunks
from churn.validate import ContractViolation, validate_snapshots
from tests.conftest import land, write_csv
from tests.data.churn_tables import bank_customers

ROWS = 600  # above the contract's 500 training rows, small enough to check quickly


@pytest.fixture
def training(snapshots) -> pd.DataFrame:
    return snapshots.training.head(ROWS).copy()


def refused(path: Path, contract, run_dir: Path, *, labelled: bool = True) -> str:
    """The message of the contract failure that validating ``path`` must end in."""
    name = "training" if labelled else "scoring"
    with pytest.raises(ContractViolation) as caught:
        validate_snapshots([land(path, run_dir, name, labelled=labelled)], contract, run_dir)
    message = str(caught.value)
    assert f"{name} snapshot ({path}" in message
    assert not (run_dir / "validated").exists()
    return message


def written(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` as a user's CSV text or Parquet file, by ``path``'s suffix."""
    if path.suffix == ".csv":
        return write_csv(frame, path)
    frame.to_parquet(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("value", ["high", "12345678901234567890"])
def test_a_word_or_a_20_digit_integer_in_a_numeric_column_is_named(training, contract, tmp_path, suffix, value):
    training = training.astype({"tenure": "string"})
    training.loc[training.index[4], "tenure"] = value
    message = refused(written(training, tmp_path / f"customers{suffix}"), contract, tmp_path)
    customer = training.iloc[4]["customerID"]
    assert (
        f"column 'tenure' must be a whole number of at most 18 digits: 1 row breaks it, e.g. {value!r}" in message
    )
    assert f"(at rows 5; customer ids {customer!r})" in message


def test_an_unsigned_64_bit_integer_in_parquet_is_named_not_wrapped(training, contract, tmp_path):
    training = training.astype({"tenure": "uint64"})
    training.loc[training.index[2], "tenure"] = 2**64 - 1
    message = refused(written(training, tmp_path / "customers.parquet"), contract, tmp_path)
    assert (
        "column 'tenure' must be a whole number of at most 18 digits: 1 row breaks it, e.g. '18446744073709551615'"
        in (message)
    )


def test_parquet_integers_with_blanks_are_read_as_written_not_as_floats(tmp_path):
    path = tmp_path / "customers.parquet"
    big = 2**62 + 1  # a float64 would round it
    pq.write_table(pa.table({"id": pa.array([big, None, 7], type=pa.int64())}), path)
    (chunk,) = read_snapshot_chunks(path, "parquet", 100)
    assert chunk["id"].astype("string").tolist() == [str(big), pd.NA, "7"]


def sqlite_source(tmp_path: Path, monkeypatch, rows: list[tuple], declared: str) -> str:
    """A SQLite table ``customers`` of (customerID, tenure) rows, behind Connection ``crm``."""
    db_path = tmp_path / "crm.db"
    engine = sa.create_engine(f"sqlite:///{db_path}")
    with engine.begin() as connection:
        connection.exec_driver_sql(f"CREATE TABLE customers (customerID {declared}, tenure INTEGER)")
        connection.exec_driver_sql("INSERT INTO customers VALUES (?, ?)", rows)
    engine.dispose()
    monkeypatch.setenv("AIRFLOW_CONN_CRM", f"sqlite:///{db_path}")
    return "sql://crm/customers"


def test_a_word_or_a_huge_integer_in_an_exported_integer_column_is_named(tmp_path, monkeypatch):
    # SQLite keeps any value in any column: a word as text, 20 digits as a REAL.
    rows = [("a", 1), ("b", "high"), ("c", 3), ("d", "12345678901234567890")]
    source = sqlite_source(tmp_path, monkeypatch, rows, "TEXT")
    with pytest.raises(SourceError) as caught:
        land_snapshot(parse_source(source), tmp_path / "raw", "training")
    assert str(caught.value) == (
        "table customers via connection crm: column 'tenure' is declared int64 but holds values that are "
        "not, at rows 2 ('high'), 4 (1.2345678901234567e+19) of the export: fix the values or the column's type"
    )
    assert not (tmp_path / "raw").exists() or not list((tmp_path / "raw").iterdir())


def test_float_ids_are_refused_from_parquet_files_and_exported_tables(training, contract, tmp_path, monkeypatch):
    training["customerID"] = [float(number) for number in range(len(training))]
    message = refused(written(training, tmp_path / "customers.parquet"), contract, tmp_path / "file")
    assert (
        "customer id column 'customerID' is stored as double numbers: an id must be text or an integer, never a "
        "number with a fraction"
    ) in message
    source = sqlite_source(tmp_path, monkeypatch, [(0.0, 1), (1.5, 2)], "REAL")
    landed = land_snapshot(parse_source(source), tmp_path / "sql" / "raw", "scoring")
    table_contract = contract.model_copy(
        update={"columns": {name: contract.columns[name] for name in ("customerID", "tenure", "Churn")}}
    )
    with pytest.raises(ContractViolation, match=r"customer id column 'customerID' is stored as double numbers"):
        validate_snapshots(
            [land(landed.path, tmp_path / "sql", "scoring", labelled=False)], table_contract, tmp_path / "sql"
        )


def test_a_row_cut_short_or_run_on_is_refused_with_its_row_and_line(training, contract, tmp_path):
    path = write_csv(training, tmp_path / "customers.csv")
    lines = path.read_text().splitlines(keepends=True)
    lines[5] = ",".join(lines[5].split(",")[:10]) + "\n"  # row 5 cut short: pandas padded it with blanks
    lines[1] = lines[1].rstrip("\n") + ",surplus\n"  # row 1 runs on: pandas took the ids for an index
    path.write_text("".join(lines[:3]) + "\n" + "".join(lines[3:]))  # a blank line is skipped, and counted
    message = refused(path, contract, tmp_path)
    assert (
        "cannot be read: not well-formed CSV (read with delimiter ','): 2 rows have a number of fields other than "
        "the header's 21: row 1 (line 2) has 22, row 5 (line 7) has 10; a row cut short or run on would be read "
        "with its values missing or shifted"
    ) in message


def test_a_nul_byte_anywhere_in_a_csv_is_found(training, contract, tmp_path):
    path = write_csv(training, tmp_path / "customers.csv")
    text = path.read_bytes()
    at = len(text) - 30  # far past the first 8 KiB that were looked at before
    assert at > 8192
    path.write_bytes(text[:at] + b"\x00" + text[at:])
    message = refused(path, contract, tmp_path)
    assert f"cannot be read: not a text CSV: it holds binary data (NUL bytes), the first at byte {at:,}" in message


def test_a_nul_byte_in_a_parquet_text_cell_is_found(training, contract, tmp_path):
    training.loc[training.index[[450, 451]], "gender"] = "Fe\x00male"
    message = refused(written(training, tmp_path / "customers.parquet"), contract, tmp_path)
    assert (
        "cannot be read: column 'gender' holds binary data (NUL bytes) at rows 451, 452: text never holds one"
        in (message)
    )


def test_too_few_of_a_label_class_to_train_on_is_named(training, contract, tmp_path):
    churners = training.index[training["Churn"] == "Yes"]
    training.loc[churners[3:], "Churn"] = "No"
    message = refused(written(training, tmp_path / "customers.csv"), contract, tmp_path)
    # pipeline.yaml: 5 folds of the training split, 80% of the rows: 7 of each class, and 1 to test.
    assert (
        "column 'Churn': only 3 rows have a positive label (positive ['Yes'], negative ['No']); each class needs "
        "at least 8, enough for training's cross-validation folds"
    ) in message


def test_a_contract_may_ask_for_more_of_each_label_class(training, contract, tmp_path):
    churners = int((training["Churn"] == "Yes").sum())
    demanding = contract.model_copy(update={"min_label_class_rows": churners + 1})
    message = refused(written(training, tmp_path / "customers.csv"), demanding, tmp_path)
    assert f"only {churners} rows have a positive label" in message
    assert f"each class needs at least {churners + 1}" in message


def test_a_megabyte_cell_is_reported_shortened_in_the_message_and_the_report(training, contract, tmp_path):
    huge = "Fe" + "m" * 1_000_000
    training.loc[training.index[7], "gender"] = huge
    training.loc[training.index[8], "customerID"] = "C" * 200_000
    message = refused(written(training, tmp_path / "customers.csv"), contract, tmp_path)
    assert f"e.g. '{huge[:80]}… (1,000,002 characters)' (at rows 8;" in message
    assert f"ids are longer than the warehouse's 64 characters, e.g. '{'C' * 80}… (200,000 characters)'" in message
    assert len(message) < 5_000
    pages = "".join(page.read_text() for page in (tmp_path / "data_docs").rglob("*.html"))
    assert "(1,000,002 characters)" in pages and "m" * 1000 not in pages


def test_good_values_still_land_exactly(training, contract, tmp_path):
    path = written(training, tmp_path / "customers.parquet")
    result = validate_snapshots([land(path, tmp_path, "training")], contract, tmp_path)
    typed = read_parquet(result["training"].path)
    assert typed["customerID"].tolist() == training["customerID"].tolist()
    assert typed["tenure"].tolist() == training["tenure"].tolist()


def test_lines_ended_by_carriage_returns_alone_are_read_as_rows(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_bytes(b'id,note\r1,"two\rlines"\r2,b\r')
    (chunk,) = read_snapshot_chunks(path, "csv", 100)
    assert chunk.to_dict("list") == {"id": ["1", "2"], "note": ["two\rlines", "b"]}


def test_a_number_too_large_for_a_float_is_named_where_the_contract_sets_no_bound(tmp_path):
    # The bank's Balance has a minimum only: "1e400" reads as infinity, which crashed the leakage check.
    bank = load_contract("bank_customer_churn")
    customers = bank_customers(600, seed=3).astype({"Balance": object})
    customers.loc[customers.index[3], "Balance"] = "1e400"
    path = tmp_path / "customers.csv"
    customers.to_csv(path, index=False)
    message = refused(path, bank, tmp_path)
    assert "column 'Balance' must be at least 0 and finite: 1 row breaks it, e.g. 'inf' (at rows 4;" in message
