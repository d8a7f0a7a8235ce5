"""Data tests: the contract accepts good snapshots and stops each kind of bad one, by name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churn.generate import DEFECTS
from churn.storage import read_parquet
from churn.validate import ContractViolation, validate_snapshots
from tests.conftest import land, validate_training, write_csv


def test_generated_public_format_files_pass_and_are_typed(source_files, contract, tmp_path: Path):
    results = validate_snapshots(
        [
            land(source_files["training"], tmp_path, "training"),
            land(source_files["scoring"], tmp_path, "scoring", labelled=False),
        ],
        contract,
        tmp_path,
    )
    assert results["training"].rows == 3000
    assert results["scoring"].rows == 600
    typed = read_parquet(results["training"].path)
    assert str(typed["tenure"].dtype) == "Int64"
    assert typed["TotalCharges"].dtype == "float64"
    assert typed.loc[typed["tenure"] == 0, "TotalCharges"].isna().all()
    assert (tmp_path / "data_docs" / "index.html").is_file()


@pytest.mark.parametrize(
    ("defect", "column", "example"),
    [
        ("text_in_tenure", "tenure", "twelve"),
        ("unknown_contract", "Contract", "Three year"),
        ("duplicate_ids", "customerID", None),
        ("null_ids", "customerID", "blank"),
        ("missing_column", "MonthlyCharges", None),
    ],
)
def test_each_defect_is_named_with_its_column(snapshots, contract, tmp_path: Path, defect, column, example):
    with pytest.raises(ContractViolation) as caught:
        validate_training(DEFECTS[defect](snapshots.training), contract, tmp_path)
    message = str(caught.value)
    assert column in message
    if example:
        assert example in message
    assert caught.value.report.is_file()  # the Data Docs are written for failed runs too
    assert not (tmp_path / "validated").exists()  # nothing typed is handed downstream


def test_out_of_range_values_are_shown(snapshots, contract, tmp_path: Path):
    with pytest.raises(ContractViolation) as caught:
        validate_training(DEFECTS["out_of_range"](snapshots.training), contract, tmp_path)
    message = str(caught.value)
    assert "'tenure'" in message and "900" in message
    assert "'MonthlyCharges'" in message and "-12.5" in message


def test_unexpected_column_is_rejected_by_the_default_contract(snapshots, contract, tmp_path: Path):
    with pytest.raises(ContractViolation, match=r"unexpected \['loyalty_points'\]"):
        validate_training(snapshots.training.assign(loyalty_points=1), contract, tmp_path)


def test_column_order_does_not_matter(snapshots, contract, tmp_path: Path):
    reordered = snapshots.training[list(reversed(snapshots.training.columns))]
    assert validate_training(reordered, contract, tmp_path)["training"].rows == 3000


def test_scoring_snapshot_with_a_label_column_is_accepted(snapshots, contract, tmp_path: Path):
    labelled_scoring = snapshots.scoring.assign(Churn="No")
    raw = land(write_csv(labelled_scoring, tmp_path / "scoring.csv"), tmp_path, "scoring", labelled=False)
    result = validate_snapshots([raw], contract, tmp_path)
    assert "Churn" not in read_parquet(result["scoring"].path).columns


def test_training_with_a_single_class_is_stopped(snapshots, contract, tmp_path: Path):
    with pytest.raises(ContractViolation, match="'Churn'"):
        validate_training(snapshots.training.assign(Churn="No"), contract, tmp_path)


def test_too_few_training_rows_are_stopped(snapshots, contract, tmp_path: Path):
    with pytest.raises(ContractViolation, match="row_count"):
        validate_training(snapshots.training.head(50), contract, tmp_path)


def test_null_rate_above_the_limit_is_stopped(snapshots, contract, tmp_path: Path):
    frame = snapshots.training.copy()
    frame.loc[frame.index[:300], "TotalCharges"] = float("nan")  # 10% blank, limit is 2%
    with pytest.raises(ContractViolation, match=r"'TotalCharges'.*3\d\d rows are blank"):
        validate_training(frame, contract, tmp_path)


def test_rows_of_the_public_telco_file_pass_unchanged(contract, tmp_path: Path):
    """Verbatim rows of the public IBM file, blank TotalCharges at zero tenure included."""
    public = Path(__file__).parent / "fixtures" / "telco_public_rows.csv"
    # Six rows are too few for the row-count and 2% blank-rate limits; every other rule applies as is.
    total_charges = contract.columns["TotalCharges"].model_copy(update={"max_null_fraction": 0.2})
    small_sample = contract.model_copy(
        update={"min_training_rows": 1, "columns": {**contract.columns, "TotalCharges": total_charges}}
    )
    # Two churners are too few to train on (see test_too_few_of_a_label_class_to_train_on_is_named):
    # the rows are checked as a scoring snapshot, every rule but the label's.
    result = validate_snapshots([land(public, tmp_path, "scoring", labelled=False)], small_sample, tmp_path)
    typed = read_parquet(result["scoring"].path)
    assert len(typed) == 6
    assert pd.isna(typed.set_index("customerID").loc["4472-LVYGI", "TotalCharges"])
