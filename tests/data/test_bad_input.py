"""Bad input, as users' real files arrive: each is stopped at validation, before training,
with a message that names the file or column, the rule, and example values."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from churn.contract import ContractError
from churn.feature import category_values, unseen_categories
from churn.manifest import read_manifests
from churn.settings import PROJECT_DIR
from churn.validate import ContractViolation, label_problems, run_validate, validate_snapshots
from tests.conftest import ingest_for, land, run_parameters, validate_training, write_csv


def validate_file(path: Path, contract, run_dir: Path):
    return validate_snapshots([land(path, run_dir, "training")], contract, run_dir)


def test_empty_file_is_named_in_the_message_and_the_report(contract, tmp_path: Path):
    empty = tmp_path / "customers.csv"
    empty.write_bytes(b"")
    with pytest.raises(
        ContractViolation, match=r"training snapshot \(.*customers\.csv\): cannot be read"
    ) as caught:
        validate_file(empty, contract, tmp_path)
    assert "the file is empty (0 bytes)" in str(caught.value)
    assert caught.value.report.is_file() and str(caught.value.report) in str(caught.value)
    pages = "".join(page.read_text() for page in (tmp_path / "data_docs").rglob("*.html"))
    assert "cannot be read: the file is empty (0 bytes)" in pages


def test_file_of_blank_lines_is_named(contract, tmp_path: Path):
    blank = tmp_path / "customers.csv"
    blank.write_text("\n\n\n")
    with pytest.raises(ContractViolation, match=r"customers\.csv\): cannot be read: it holds no header row"):
        validate_file(blank, contract, tmp_path)


def test_header_only_file_fails_the_row_count(snapshots, contract, tmp_path: Path):
    with pytest.raises(
        ContractViolation,
        match=r"table needs at least 500 rows: it has 0 \[expect_table_row_count_to_be_between\]",
    ):
        validate_training(snapshots.training.head(0), contract, tmp_path)


def test_truncated_parquet_is_reported_as_damaged(snapshots, contract, tmp_path: Path):
    whole = tmp_path / "whole.parquet"
    snapshots.training.to_parquet(whole)
    truncated = tmp_path / "customers.parquet"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(ContractViolation, match=r"customers\.parquet\): cannot be read: .*\(damaged or truncated"):
        validate_file(truncated, contract, tmp_path)


def test_binary_garbage_named_csv_is_refused_and_the_readable_snapshot_still_reported(
    source_files, contract, tmp_path: Path
):
    garbage = tmp_path / "customers.csv"
    garbage.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ContractViolation) as caught:
        validate_snapshots(
            [
                land(garbage, tmp_path, "training"),
                land(source_files["scoring"], tmp_path, "scoring", labelled=False),
            ],
            contract,
            tmp_path,
        )
    message = str(caught.value)
    assert "1 problem(s)" in message
    assert "customers.csv): cannot be read: not a text CSV: it holds binary data" in message
    assert caught.value.report.is_file() and str(caught.value.report) in message
    assert not (tmp_path / "validated").exists()


def test_file_in_another_encoding_is_named(snapshots, contract, tmp_path: Path):
    text = write_csv(snapshots.training.head(50), tmp_path / "utf8.csv").read_text()
    latin = tmp_path / "customers.csv"
    latin.write_bytes(text.replace("Male", "Mâle", 1).encode("latin-1"))
    with pytest.raises(
        ContractViolation, match=r"customers\.csv\): cannot be read: not UTF-8 text .*save it as UTF-8"
    ):
        validate_file(latin, contract, tmp_path)


def test_a_file_against_its_declared_delimiter_gets_a_hint(snapshots, contract, tmp_path: Path):
    from churn.contract import CsvDialect

    path = tmp_path / "training.csv"
    snapshots.training.to_csv(path, sep=";", index=False)
    comma_declared = contract.model_copy(update={"csv": CsvDialect(delimiter=",")})
    with pytest.raises(ContractViolation, match=r"suggests the file uses ';' as its delimiter"):
        validate_file(path, comma_declared, tmp_path)


def test_numbers_in_a_value_set_are_compared_as_numbers(snapshots, contract, tmp_path: Path):
    written_as_floats = snapshots.training.assign(SeniorCitizen=snapshots.training["SeniorCitizen"].astype(float))
    assert validate_training(written_as_floats, contract, tmp_path)["training"].rows == 3000
    outside = snapshots.training.assign(SeniorCitizen=snapshots.training["SeniorCitizen"].replace(1, 2))
    with pytest.raises(
        ContractViolation,
        match=r"'SeniorCitizen' must be one of 0, 1: .* e\.g\. '2'.*\[expect_column_values_to_be_in_set\]",
    ):
        validate_training(outside, contract, tmp_path)


def test_customer_id_longer_than_the_warehouse_column_is_stopped(snapshots, contract, tmp_path: Path):
    frame = snapshots.training.copy()
    frame.loc[frame.index[0], "customerID"] = "C" * 65
    with pytest.raises(ContractViolation, match=r"'customerID': 1 ids are longer than the warehouse's 64 .*CCCC"):
        validate_training(frame, contract, tmp_path)


def test_renamed_column_is_reported_as_missing_and_unexpected(snapshots, contract, tmp_path: Path):
    with pytest.raises(ContractViolation, match=r"missing \['tenure'\], unexpected \['Tenure'\]"):
        validate_training(snapshots.training.rename(columns={"tenure": "Tenure"}), contract, tmp_path)


def test_entirely_blank_number_column_is_named(snapshots, contract, tmp_path: Path):
    with pytest.raises(ContractViolation, match=r"'MonthlyCharges' must not be blank: 3,000 rows are blank"):
        validate_training(snapshots.training.assign(MonthlyCharges=float("nan")), contract, tmp_path)


def test_extra_column_passes_when_the_contract_allows_it(snapshots, contract, tmp_path: Path):
    allowing = contract.model_copy(update={"extra_columns": "allow"})
    result = validate_training(snapshots.training.assign(loyalty_points=3), allowing, tmp_path)
    assert result["training"].rows == 3000


def _leaky_contract(contract):
    from churn.contract import ColumnSpec

    leak = ColumnSpec(name="CancellationReason", type="category", values=("None", "Moved", "Price"))
    return contract.model_copy(update={"columns": {**contract.columns, "CancellationReason": leak}})


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

    assert label_problems(conform(text_view(snapshots.training), contract), contract, 7) == []


def test_scoring_categories_unseen_in_training_are_reported_not_refused():
    training = pd.DataFrame({"Contract": ["Month-to-month", "One year"], "gender": ["Male", "Female"]})
    scoring = pd.DataFrame({"Contract": ["Two year", "One year"], "gender": ["Male", None]})
    assert unseen_categories(
        category_values(training, ["Contract", "gender"]), category_values(scoring, ["Contract", "gender"])
    ) == {"Contract": ["Two year"]}


def test_blank_total_charges_at_zero_tenure_is_not_an_error(snapshots, contract, tmp_path: Path):
    zero_tenure = snapshots.training[snapshots.training["tenure"] == 0]
    assert len(zero_tenure) and zero_tenure["TotalCharges"].isna().all()
    assert validate_training(snapshots.training, contract, tmp_path)["training"].rows == 3000


def test_a_typo_in_a_contract_fails_validate_naming_the_file_and_key(settings, source_files, tmp_path: Path):
    bundled = (PROJECT_DIR / "include" / "churn" / "contracts" / "telco_churn.yaml").read_text()
    misspelt = tmp_path / "our_churn.yaml"
    misspelt.write_text(bundled.replace("extra_columns: reject", "extra_colums: reject"))
    landed = ingest_for(
        settings, {**run_parameters(source_files["training"], source_files["scoring"]), "contract": str(misspelt)}
    )
    with pytest.raises(ContractError, match=rf"contract {misspelt}: unknown key 'extra_colums'"):
        run_validate(landed.model_dump(mode="json"))
    failure = read_manifests(landed.run.run_dir)["failed"]
    assert failure.phase == "validate" and "extra_colums" in failure.error
    assert not (landed.run.run_dir / "validated").exists()


def test_every_problem_of_both_snapshots_comes_in_one_message_and_one_report(snapshots, contract, tmp_path: Path):
    training = snapshots.training.astype({"tenure": object, "MonthlyCharges": object})
    training.loc[training.index[3], "tenure"] = "twelve"
    training.loc[training.index[5], "PaymentMethod"] = "Bitcoin"
    training.loc[training.index[7], "MonthlyCharges"] = -5.0
    scoring = snapshots.scoring.astype({"tenure": object})
    scoring.loc[scoring.index[2], "tenure"] = "12345678901234567890"
    scoring.loc[scoring.index[4], "MonthlyCharges"] = 500.0
    with pytest.raises(ContractViolation) as caught:
        validate_snapshots(
            [
                land(write_csv(training, tmp_path / "training.csv"), tmp_path, "training"),
                land(write_csv(scoring, tmp_path / "scoring.csv"), tmp_path, "scoring", labelled=False),
            ],
            contract,
            tmp_path,
        )
    message = str(caught.value)
    assert "failed with 5 problem(s)" in message, message

    def customer(frame, row: int) -> str:
        return re.escape(repr(frame["customerID"].iloc[row]))

    for problem in (
        r"training .*'tenure' must be a whole number of at most 18 digits: 1 row breaks it, e\.g\. 'twelve' "
        rf"\(at rows 4; customer ids {customer(training, 3)}\) \[expect_column_values_to_match_regex\]",
        r"training .*'PaymentMethod' must be one of 'Electronic check', .* e\.g\. 'Bitcoin' "
        rf"\(at rows 6; customer ids {customer(training, 5)}\)",
        r"training .*'MonthlyCharges' must be between 0 and 200: 1 row breaks it, e\.g\. '-5\.0' "
        rf"\(at rows 8; customer ids {customer(training, 7)}\)",
        r"scoring .*'tenure' must be a whole number of at most 18 digits: .* e\.g\. '12345678901234567890' "
        rf"\(at rows 3; customer ids {customer(scoring, 2)}\)",
        r"scoring snapshot .*'MonthlyCharges' must be between 0 and 200: .* e\.g\. '500\.0' "
        rf"\(at rows 5; customer ids {customer(scoring, 4)}\)",
    ):
        assert re.search(problem, message), problem
    pages = "".join(page.read_text() for page in (tmp_path / "data_docs").rglob("*.html"))
    for suite in ("training_text", "training_typed", "scoring_text", "scoring_typed"):
        assert suite in pages
    assert not (tmp_path / "validated").exists()
