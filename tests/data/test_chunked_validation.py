"""Data tests: validating a snapshot a few rows at a time judges it as validating it whole does,
including what only the whole snapshot can show (duplicates across chunks, blank rates)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churn.generate import DEFECTS
from churn.validate import ContractViolation, validate_snapshots
from tests.conftest import land, write_csv

# Rows per chunk small enough that the 3,000 training rows make five chunks, the last one short.
TINY_CHUNK = 700
WHOLE = 1_000_000


def read_typed(path) -> pd.DataFrame:
    """A validated copy, wherever run storage keeps it."""
    with path.open("rb") as handle:
        return pd.read_parquet(handle)


def outcome(path: Path, contract, run_dir: Path, chunk_rows: int) -> tuple[str, object]:
    """Validate one landed training file; the verdict, with the run folder left out of messages."""
    snapshot = land(path, run_dir, "training")
    try:
        checked = validate_snapshots([snapshot], contract, run_dir, chunk_rows=chunk_rows)["training"]
    except ContractViolation as violation:
        return "failed", str(violation).replace(str(run_dir), "<run>")
    return "passed", (checked.rows, checked.expectations, read_typed(checked.path))


def chunked_and_whole(path: Path, contract, tmp_path: Path) -> tuple[tuple[str, object], tuple[str, object]]:
    return (
        outcome(path, contract, tmp_path / "chunked", TINY_CHUNK),
        outcome(path, contract, tmp_path / "whole", WHOLE),
    )


def test_good_csv_gives_the_same_rows_checks_and_typed_copy(snapshots, contract, tmp_path: Path):
    source = write_csv(snapshots.training, tmp_path / "training.csv")
    (chunked_verdict, chunked), (whole_verdict, whole) = chunked_and_whole(source, contract, tmp_path)
    assert chunked_verdict == whole_verdict == "passed"
    assert chunked[:2] == whole[:2] == (3000, whole[1])
    pd.testing.assert_frame_equal(chunked[2], whole[2])


def test_good_parquet_gives_the_same_rows_checks_and_typed_copy(snapshots, contract, tmp_path: Path):
    source = tmp_path / "training.parquet"
    snapshots.training.to_parquet(source)
    (chunked_verdict, chunked), (whole_verdict, whole) = chunked_and_whole(source, contract, tmp_path)
    assert chunked_verdict == whole_verdict == "passed"
    assert chunked[:2] == whole[:2]
    pd.testing.assert_frame_equal(chunked[2], whole[2])


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_is_reported_alike_chunked_and_whole(snapshots, contract, tmp_path: Path, defect):
    source = write_csv(DEFECTS[defect](snapshots.training), tmp_path / "training.csv")
    chunked, whole = chunked_and_whole(source, contract, tmp_path)
    assert chunked == whole
    assert chunked[0] == "failed"
    assert not (tmp_path / "chunked" / "validated").exists()


def test_blank_rate_is_judged_on_the_whole_snapshot_not_per_chunk(snapshots, contract, tmp_path: Path):
    frame = snapshots.training.copy()
    limit = contract.columns["TotalCharges"].max_null_fraction
    # Blanks crowded into the first chunk: far above the limit there, under it over the file.
    allowed = int(limit * len(frame)) - int(frame["TotalCharges"].isna().sum())
    assert TINY_CHUNK * limit < allowed
    frame.loc[frame.index[:allowed], "TotalCharges"] = float("nan")
    chunked, whole = chunked_and_whole(write_csv(frame, tmp_path / "training.csv"), contract, tmp_path)
    assert chunked[0] == whole[0] == "passed"

    frame.loc[frame.index[-50:], "TotalCharges"] = float("nan")  # now over the limit in the file
    chunked, whole = chunked_and_whole(write_csv(frame, tmp_path / "over.csv"), contract, tmp_path / "over")
    assert chunked == whole
    assert "'TotalCharges'" in chunked[1] and "rows are blank" in chunked[1]


def test_duplicate_id_in_two_chunks_is_caught_with_both_rows(snapshots, contract, tmp_path: Path):
    frame = snapshots.training.head(600).copy()
    frame.loc[frame.index[150], "customerID"] = frame.loc[frame.index[10], "customerID"]
    verdict, message = outcome(write_csv(frame, tmp_path / "training.csv"), contract, tmp_path, chunk_rows=100)
    assert verdict == "failed"
    twin = frame.iloc[10]["customerID"]
    assert f"must be unique: 2 rows break it, e.g. {twin!r} (at rows 11, 151)" in message


def test_bad_value_in_the_third_chunk_is_named_by_its_row_in_the_file(snapshots, contract, tmp_path: Path):
    frame = snapshots.training.head(600).astype({"tenure": object})
    frame.loc[frame.index[250], "tenure"] = "twelve"
    verdict, message = outcome(write_csv(frame, tmp_path / "training.csv"), contract, tmp_path, chunk_rows=100)
    assert verdict == "failed"
    customer = frame.iloc[250]["customerID"]
    assert "column 'tenure'" in message
    assert f"1 row breaks it, e.g. 'twelve' (at rows 251; customer ids {customer!r})" in message


def test_typed_stage_rows_are_numbered_in_the_file_too(snapshots, contract, tmp_path: Path):
    frame = snapshots.training.head(600).copy()
    frame.loc[frame.index[[5, 230]], "tenure"] = 900
    verdict, message = outcome(write_csv(frame, tmp_path / "training.csv"), contract, tmp_path, chunk_rows=100)
    assert verdict == "failed"
    assert "must be between 0 and 72: 2 rows break it" in message
    customers = ", ".join(repr(frame.iloc[row]["customerID"]) for row in (5, 230))
    assert f"(at rows 6, 231; customer ids {customers})" in message


def test_a_malformed_line_past_the_first_chunk_makes_the_file_unreadable(snapshots, contract, tmp_path: Path):
    source = write_csv(snapshots.training, tmp_path / "training.csv")
    lines = source.read_text().splitlines(keepends=True)
    lines[2500] = lines[2500].rstrip("\n") + ",surplus\n"
    source.write_text("".join(lines))
    chunked, whole = chunked_and_whole(source, contract, tmp_path)
    assert chunked == whole
    assert "cannot be read: not well-formed CSV" in chunked[1]


def test_a_non_utf8_byte_past_the_first_chunk_makes_the_file_unreadable(snapshots, contract, tmp_path: Path):
    source = write_csv(snapshots.training, tmp_path / "training.csv")
    text = source.read_text()
    cut = len(text) - 200
    source.write_bytes(text[:cut].encode() + text[cut:].replace("No", "Nö", 1).encode("latin-1"))
    chunked, whole = chunked_and_whole(source, contract, tmp_path)
    assert chunked[0] == whole[0] == "failed"
    assert "cannot be read: not UTF-8 text" in chunked[1] and "save it as UTF-8" in chunked[1]


def test_scoring_snapshot_is_chunked_alike(snapshots, contract, tmp_path: Path):
    source = write_csv(snapshots.scoring, tmp_path / "scoring.csv")
    results = {
        chunk_rows: validate_snapshots(
            [land(source, tmp_path / str(chunk_rows), "scoring", labelled=False)],
            contract,
            tmp_path / str(chunk_rows),
            chunk_rows=chunk_rows,
        )["scoring"]
        for chunk_rows in (TINY_CHUNK, WHOLE)
    }
    assert results[TINY_CHUNK].rows == results[WHOLE].rows == 600
    assert results[TINY_CHUNK].expectations == results[WHOLE].expectations
    pd.testing.assert_frame_equal(read_typed(results[TINY_CHUNK].path), read_typed(results[WHOLE].path))
