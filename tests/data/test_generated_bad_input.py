"""Hostile snapshots written by Hypothesis: CSV text and Parquet files of the real contract's
columns with words in number columns, huge integers, NUL bytes, rows cut short or run on,
other delimiters, quoting, line ends and encodings, unicode, blank and duplicate ids, float
ids, label spellings, missing and repeated columns, truncated, empty and header-only files.

Whatever the file, validation either passes or raises the pipeline's contract failure
(:class:`ContractViolation`), whose message names the file; never any other exception. The
examples are derived from a fixed seed (``derandomize``), so every run checks the same files.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from churn.generate import as_public_csv_text
from churn.ingest import land_snapshot
from churn.sources import SourceError, parse_source
from churn.validate import ContractViolation, validate_snapshots
from tests.conftest import land

BASE_ROWS = 600  # above the contract's 500 training rows: a file may pass
SQL_ROWS = 40  # scoring snapshots: a table's examples need no label, nor many rows


def generated(examples: int) -> settings:
    """``examples`` files from a fixed seed, each checked in about a second, however slow."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# Cells that a person, a spreadsheet or a broken export puts where a value belongs.
hostile_cells = st.one_of(
    st.sampled_from(
        [
            "high",
            "",
            " ",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "1e400",
            "-0",
            "1,5",
            "0x1F",
            "١٢",
            "Yes",
            "no",
            "TRUE",
            "1.0",
        ]
    ),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=20),  # any unicode: NUL, quotes, line breaks, delimiters
    st.builds(lambda letter, length: letter * length, st.sampled_from("a9-:"), st.integers(1_000, 100_000)),
)


@pytest.fixture(scope="module")
def base_records(snapshots) -> list[list[str]]:
    """The header and rows of a valid training snapshot, as the CSV's text cells."""
    text = as_public_csv_text(snapshots.training.head(BASE_ROWS)).to_csv(index=False)
    return list(csv.reader(io.StringIO(text)))


@st.composite
def damaged_records(draw, base: list[list[str]]) -> list[list[str]]:
    """``base`` with a few cells, rows and header names changed."""
    header, *rows = (list(record) for record in base)
    for _ in range(draw(st.integers(0, 6))):
        row = draw(st.integers(0, len(rows) - 1))
        match draw(st.sampled_from(["cell", "cell", "cut", "extend", "duplicate_id", "header", "drop_column"])):
            case "cell":
                rows[row][draw(st.integers(0, len(header) - 1))] = draw(hostile_cells)
            case "cut":
                rows[row] = rows[row][: draw(st.integers(0, len(header) - 1))]
            case "extend":
                rows[row] = rows[row] + [draw(hostile_cells)]
            case "duplicate_id":
                rows[row][0] = rows[draw(st.integers(0, len(rows) - 1))][0]
            case "header":
                header[draw(st.integers(0, len(header) - 1))] = draw(st.sampled_from([*header, "Tenure", ""]))
            case "drop_column":
                column = draw(st.integers(0, len(header) - 1))
                header, rows = _without(header, column), [_without(record, column) for record in rows]
    return [header, *rows[: draw(st.sampled_from([len(rows), len(rows), 0, 1, 7]))]]


def _without(record: list[str], position: int) -> list[str]:
    return record[:position] + record[position + 1 :]


@st.composite
def hostile_csv(draw, base: list[list[str]]) -> bytes:
    """A CSV file of damaged records, written in a drawn dialect and encoding, maybe cut off."""
    special = draw(st.sampled_from(["file"] * 6 + ["empty", "blank lines", "binary"]))
    if special == "empty":
        return b""
    if special == "blank lines":
        return b"\n\r\n\n"
    if special == "binary":
        return draw(st.binary(min_size=1, max_size=2_000))
    text = io.StringIO()
    writer = csv.writer(
        text,
        delimiter=draw(st.sampled_from([",", ",", ";", "\t", "|"])),
        quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])),
        lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])),
    )
    writer.writerows(draw(damaged_records(base)))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    data = text.getvalue().encode(encoding, errors="replace")
    cut = draw(st.sampled_from([len(data), len(data), len(data) // 2, len(data) - 3]))
    return data[:cut]


def assert_passes_or_names_the_file(path: Path, contract, run_dir: Path, *, labelled: bool) -> None:
    """Validation passes, or fails with the contract failure naming ``path``: nothing else."""
    name = "training" if labelled else "scoring"
    try:
        validate_snapshots([land(path, run_dir, name, labelled=labelled)], contract, run_dir)
    except ContractViolation as violation:
        assert f"{name} snapshot ({path}" in str(violation)
        event("refused by the contract")  # how often, --hypothesis-show-statistics says
    else:
        event("passed")


@generated(examples=30)
@given(data=st.data(), labelled=st.booleans())
def test_a_generated_csv_passes_or_fails_the_contract_by_name(data, labelled, base_records, contract):
    content = data.draw(hostile_csv(base_records))
    with tempfile.TemporaryDirectory(prefix="churn-generated-") as folder:
        path = Path(folder) / "customers.csv"
        path.write_bytes(content)
        assert_passes_or_names_the_file(path, contract, Path(folder) / "run", labelled=labelled)


@st.composite
def hostile_frame(draw, base: pd.DataFrame) -> pd.DataFrame:
    """``base`` with typed columns a Parquet writer (or a SQL export) may produce instead."""
    frame = base.copy()
    rows = len(frame)
    for _ in range(draw(st.integers(1, 4))):
        column = draw(st.sampled_from(list(frame.columns)))
        match draw(st.sampled_from(["float", "uint64", "integers_with_blanks", "text", "blank", "drop"])):
            case "float":  # float ids: 1.0 must never become the id "1.0"
                frame[column] = np.arange(rows, dtype="float64") / draw(st.sampled_from([1, 2]))
            case "uint64":
                frame[column] = np.full(rows, draw(st.integers(0, 2**64 - 1)), dtype="uint64")
            case "integers_with_blanks":
                values = draw(st.integers(-(2**63), 2**63 - 1))
                frame[column] = pd.array([values if row % 3 else None for row in range(rows)], dtype="Int64")
            case "text":
                frame[column] = frame[column].astype("string")
                frame.loc[frame.index[draw(st.integers(0, rows - 1))], column] = draw(hostile_cells)
            case "blank":
                frame[column] = pd.array([None] * rows, dtype="string")
            case "drop":
                if len(frame.columns) > 1:
                    frame = frame.drop(columns=[column])
    return frame.head(draw(st.sampled_from([rows, rows, 0, 9])))


@generated(examples=20)
@given(data=st.data(), labelled=st.booleans())
def test_a_generated_parquet_file_passes_or_fails_the_contract_by_name(data, labelled, snapshots, contract):
    frame = data.draw(hostile_frame(snapshots.training.head(BASE_ROWS)))
    with tempfile.TemporaryDirectory(prefix="churn-generated-") as folder:
        path = Path(folder) / "customers.parquet"
        frame.to_parquet(path, index=False)
        assert_passes_or_names_the_file(path, contract, Path(folder) / "run", labelled=labelled)


@generated(examples=10)
@given(data=st.data())
def test_a_generated_sql_table_is_refused_by_name_at_ingest_or_validate(data, snapshots, contract):
    frame = snapshots.scoring.head(SQL_ROWS).astype(object)
    for _ in range(data.draw(st.integers(1, 4))):
        column = data.draw(st.sampled_from(list(frame.columns)))
        frame.loc[frame.index[data.draw(st.integers(0, SQL_ROWS - 1))], column] = data.draw(hostile_cells)
    with tempfile.TemporaryDirectory(prefix="churn-generated-") as folder:
        url = f"sqlite:///{Path(folder) / 'crm.db'}"
        engine = sa.create_engine(url)
        # Numbers declared as SQL numbers: SQLite keeps a word or 30 digits there all the same.
        declared = {"integer": "INTEGER", "number": "REAL"}
        columns = ", ".join(
            f'"{name}" {declared.get(contract.columns[name].type, "TEXT")}' for name in frame.columns
        )
        with engine.begin() as connection:
            connection.exec_driver_sql(f"CREATE TABLE customers ({columns})")
        frame.to_sql("customers", engine, index=False, if_exists="append")
        engine.dispose()
        run_dir = Path(folder) / "run"
        with mock.patch.dict(os.environ, {"AIRFLOW_CONN_CRM": url}):
            try:
                land_snapshot(parse_source("sql://crm/customers"), Path(folder) / "export", "scoring")
            except SourceError as error:
                assert str(error).startswith("table customers via connection crm: column ")
                event("refused at ingest")
                return
        exported = Path(folder) / "export" / "scoring.parquet"
        assert_passes_or_names_the_file(exported, contract, run_dir, labelled=False)
