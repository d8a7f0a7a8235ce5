"""Bad input, as users' real files arrive: each is stopped before training with a message
that names the file or column, the rule, and example values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from churn.feature import unseen_categories
from churn.ingest import land_snapshot
from churn.sources import SourceError, parse_source
from churn.validate import ContractViolation, find_label_leaks, validate_snapshots
from tests.conftest import write_csv
from tests.data.test_contract_validation import land, validate_training


def test_empty_file_is_named(tmp_path: Path):
    empty = tmp_path / "training.csv"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty \(0 bytes\).*training\.csv"):
        land_snapshot(parse_source(str(empty)), tmp_path / "raw.parquet")


def test_header_only_file_fails_the_row_count(snapshots, contract, tmp_path: Path):
    with pytest.raises(ContractViolation, match=r"expect_table_row_count_to_be_between.*observed 0"):
        validate_training(snapshots.training.head(0), contract, tmp_path)


def test_truncated_parquet_is_reported_as_damaged(snapshots, tmp_path: Path):
    whole = tmp_path / "whole.parquet"
    snapshots.training.to_parquet(whole)
    truncated = tmp_path / "training.parquet"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(SourceError, match=r"cannot read parquet file .*training\.parquet \(damaged or truncated"):
        land_snapshot(parse_source(str(truncated)), tmp_path / "raw.parquet")


def test_binary_garbage_named_csv_is_refused(tmp_path: Path):
    garbage = tmp_path / "training.csv"
    garbage.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(SourceError, match="not a text CSV: it holds binary data"):
        land_snapshot(parse_source(str(garbage)), tmp_path / "raw.parquet")


def test_file_in_another_encoding_is_named(snapshots, tmp_path: Path):
    text = write_csv(snapshots.training.head(50), tmp_path / "utf8.csv").read_text()
    latin = tmp_path / "training.csv"
    latin.write_bytes(text.replace("Male", "Mâle", 1).encode("latin-1"))
    with pytest.raises(SourceError, match=r"not UTF-8 text .*save it as UTF-8"):
        land_snapshot(parse_source(str(latin)), tmp_path / "raw.parquet")


def test_wrong_delimiter_gets_a_hint(snapshots, contract, tmp_path: Path):
    path = tmp_path / "training.csv"
    snapshots.training.to_csv(path, sep=";", index=False)
    with pytest.raises(ContractViolation, match=r"suggests the file uses ';' as its delimiter"):
        validate_snapshots({"training": (land(path, tmp_path, "training"), True)}, contract, tmp_path)


def test_renamed_column_is_reported_as_missing_and_unexpected(snapshots, contract, tmp_path: Path):
    with pytest.raises(ContractViolation, match=r"missing \['tenure'\], unexpected \['Tenure'\]"):
        validate_training(snapshots.training.rename(columns={"tenure": "Tenure"}), contract, tmp_path)


def test_entirely_blank_number_column_is_named(snapshots, contract, tmp_path: Path):
    with pytest.raises(ContractViolation, match=r"'MonthlyCharges'.*3000 rows are blank"):
        validate_training(snapshots.training.assign(MonthlyCharges=float("nan")), contract, tmp_path)


def test_extra_column_passes_when_the_contract_allows_it(snapshots, contract, tmp_path: Path):
    allowing = dataclasses.replace(contract, extra_columns="allow")
    result = validate_training(snapshots.training.assign(loyalty_points=3), allowing, tmp_path)
    assert result["training"].rows == 3000


def _leaky_contract(contract):
    from churn.contract import ColumnSpec

    leak = ColumnSpec(name="CancellationReason", type="category", values=("None", "Moved", "Price"))
    return dataclasses.replace(contract, columns={**contract.columns, "CancellationReason": leak})


def _with_leak(training: pd.DataFrame) -> pd.DataFrame:
    churned = training["Churn"] == "Yes"
    reason = churned.map({True: "Price", False: "None"}).astype(object)
    reason.iloc[:5] = "Moved"  # almost, not exactly, the label
    return training.assign(CancellationReason=reason)


def test_label_leakage_is_flagged_with_the_column_named(snapshots, contract, tmp_path: Path):
    with pytest.raises(ContractViolation, match=r"'CancellationReason': label leakage.*ROC AUC (0\.99\d|1\.000)"):
        validate_training(_with_leak(snapshots.training), _leaky_contract(contract), tmp_path)


def test_honest_features_are_not_flagged_as_leaks(snapshots, contract):
    from churn.validate import conform, text_view

    assert find_label_leaks(conform(text_view(snapshots.training), contract), contract) == []


def test_scoring_categories_unseen_in_training_are_reported_not_refused():
    training = pd.DataFrame({"Contract": ["Month-to-month", "One year"], "gender": ["Male", "Female"]})
    scoring = pd.DataFrame({"Contract": ["Two year", "One year"], "gender": ["Male", None]})
    assert unseen_categories(training, scoring, ["Contract", "gender"]) == {"Contract": ["Two year"]}


def test_blank_total_charges_at_zero_tenure_is_not_an_error(snapshots, contract, tmp_path: Path):
    zero_tenure = snapshots.training[snapshots.training["tenure"] == 0]
    assert len(zero_tenure) and zero_tenure["TotalCharges"].isna().all()
    assert validate_training(snapshots.training, contract, tmp_path)["training"].rows == 3000
