"""Churn tables of other kinds (a retail bank, a credit-card issuer, a mobile operator), each
in its own schema and file form, through every phase on their bundled contracts alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churn.contract import ContractError, load_contract
from churn.evaluate import run_evaluate
from churn.feature import run_feature
from churn.model import model_columns
from churn.package import run_package
from churn.score import run_score
from churn.settings import PROJECT_DIR, load_settings
from churn.storage import detect_delimiter, read_snapshot_chunks
from churn.train import run_train
from churn.validate import ContractViolation, run_validate
from tests.conftest import ingest_for, quick_settings, run_parameters, stored_scores
from tests.data.churn_tables import TABLES, bank_customers, telecom_lines, write_european_spreadsheet


def edited_contract(folder: Path, contract: str, written: str, instead: str) -> str:
    """The path of a copy of bundled ``contract`` with ``written`` (which it must hold) replaced."""
    bundled = (PROJECT_DIR / "include" / "churn" / "contracts" / f"{contract}.yaml").read_text()
    assert written in bundled
    copy = folder / f"{contract}.yaml"
    copy.write_text(bundled.replace(written, instead))
    return str(copy)


def ingest_table(settings, files: dict[str, Path], contract: str):
    return ingest_for(settings, {**run_parameters(files["training"], files["scoring"]), "contract": contract})


@pytest.mark.parametrize("kind", list(TABLES))
def test_each_table_runs_through_every_phase_on_its_contract_alone(kind, tmp_path: Path):
    table = TABLES[kind]
    settings = quick_settings(load_settings({"CHURN_HOME": str(tmp_path / "home")}))
    files = table.files(settings.sources_dir)  # where ingest may read files
    validated = run_validate(ingest_table(settings, files, table.contract), settings)
    features = run_feature(validated)
    trained = run_train(features, settings)
    evaluated = run_evaluate(trained, settings)
    packaged = run_package(validated, trained, evaluated, settings)
    scored = run_score(features, packaged, settings)

    contract = load_contract(table.contract)
    scoring = pd.read_csv(files["scoring"], sep=None, engine="python", dtype=str, encoding="utf-8-sig")
    stored = stored_scores(settings.warehouse_url)
    assert scored.rows_written == len(scoring) == len(stored)
    assert sorted(stored["customer_id"]) == sorted(contract.customer_ids(scoring))
    assert evaluated.metrics["test_roc_auc"] > 0.75, evaluated.metrics
    numeric, categorical = model_columns(contract)
    modelled = {*numeric, *categorical}
    assert not modelled & (set(contract.not_modelled) | set(contract.id_columns) | {contract.label_column})


def test_a_composite_id_reaches_the_warehouse_as_one_key(tmp_path: Path):
    contract = load_contract("telecom_usage_churn")
    lines = telecom_lines(50, seed=3)
    assert lines["Phone"].duplicated().any() and not lines[["Area Code", "Phone"]].duplicated().any()
    ids = contract.customer_ids(lines.astype({"Area Code": "string"}))
    assert ids.iloc[0] == f"{lines['Area Code'].iloc[0]}|{lines['Phone'].iloc[0]}"
    assert ids.is_unique


def validate_table(settings, kind: str, tmp_path: Path, *, training: pd.DataFrame | None = None, contract=None):
    table = TABLES[kind]
    files = table.files(tmp_path / "sources")
    if training is not None:
        table.write(training, files["training"])
    return run_validate(ingest_table(settings, files, contract or table.contract), settings)


def test_a_duplicate_composite_id_is_refused_with_its_key(settings, tmp_path: Path):
    lines = telecom_lines(1500, seed=11)
    lines.loc[5, ["Area Code", "Phone"]] = lines.loc[9, ["Area Code", "Phone"]].to_numpy()
    with pytest.raises(
        ContractViolation,
        match=r"'Area Code' \+ 'Phone' must be unique together: 2 rows break it, .*\(at rows 6, 10\) \[expect_",
    ):
        validate_table(settings, "telecom", tmp_path, training=lines)


def test_a_leak_modelled_as_a_feature_is_caught_for_an_integer_label(settings, tmp_path: Path):
    as_feature = edited_contract(
        tmp_path, "bank_customer_churn", "Complain: {type: integer, role: leak,", "Complain: {type: integer,"
    )
    with pytest.raises(ContractViolation, match=r"'Complain': label leakage: .*declare it `role: leak`"):
        validate_table(settings, "bank", tmp_path, contract=as_feature)


def test_label_values_outside_the_contract_are_named(settings, tmp_path: Path):
    customers = bank_customers(1500, seed=11)
    customers.loc[[3, 7], "Exited"] = 2
    with pytest.raises(
        ContractViolation, match=r"'Exited' must be one of 0\.0, 1\.0: 2 rows break it, e\.g\. '2'"
    ):
        validate_table(settings, "bank", tmp_path, training=customers)


def test_a_phrase_label_misspelt_is_named(settings, tmp_path: Path):
    cards = TABLES["credit_card"].make(1500, 11)
    cards.loc[4, "Attrition_Flag"] = "Attrited"
    with pytest.raises(
        ContractViolation, match=r"'Attrition_Flag' must be one of .*: 1 row breaks it, e\.g\. 'Attrited'"
    ):
        validate_table(settings, "credit_card", tmp_path, training=cards)


def test_a_label_of_one_class_fails_validation_not_training(settings, tmp_path: Path):
    lines = telecom_lines(1500, seed=11).assign(**{"Churn?": False})
    with pytest.raises(ContractViolation, match=r"'Churn\?': no row has a positive label \(positive \[True\]"):
        validate_table(settings, "telecom", tmp_path, training=lines)


def test_decimal_commas_need_the_contract_to_say_so(settings, tmp_path: Path):
    undeclared = edited_contract(tmp_path, "telecom_usage_churn", '  decimal: ","\n', "")
    with pytest.raises(ContractViolation, match=r"'Day Mins' must be a number: .* e\.g\. '\d+,\d'"):
        validate_table(settings, "telecom", tmp_path, contract=undeclared)


def test_a_table_without_an_id_is_refused_at_validate_saying_how_to_declare_one(settings, tmp_path: Path):
    no_id = edited_contract(
        tmp_path,
        "bank_customer_churn",
        "CustomerId: {type: integer, role: id}",
        "CustomerId: {type: integer, role: ignore}",
    )
    with pytest.raises(ContractError, match=r"no column identifies a customer: give the id column `role: id`"):
        validate_table(settings, "bank", tmp_path, contract=no_id)


def test_booleans_in_parquet_validate_under_a_contract_spelling_them_otherwise(settings, tmp_path: Path):
    table = TABLES["telecom"]
    files = table.files(tmp_path / "sources")
    parquet = tmp_path / "sources" / "training.parquet"
    telecom_lines(1500, seed=11).to_parquet(parquet)
    assert pd.read_parquet(parquet)["Churn?"].dtype == bool
    validated = run_validate(ingest_table(settings, {**files, "training": parquet}, table.contract), settings)
    assert validated.training.rows == 1500


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_the_delimiter_is_detected_with_quoted_fields(delimiter):
    rows = [["id", "name", "note"], ["1", '"Smith, J"', '"a;b|c\td"'], ["2", "Lee", "x"]]
    text = "".join(delimiter.join(row) + "\n" for row in rows)
    assert detect_delimiter(text) == delimiter


def test_a_header_alone_or_a_single_column_falls_back_to_a_comma():
    assert detect_delimiter("customer_id\nA1\nA2\n") == ","


def test_a_byte_order_mark_and_semicolons_are_read_as_the_columns(tmp_path: Path):
    from churn.locations import location

    path = tmp_path / "lines.csv"
    write_european_spreadsheet(telecom_lines(30, seed=1), path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    contract = load_contract("telecom_usage_churn")
    (chunk,) = read_snapshot_chunks(location(path), "csv", 100, contract.csv)
    assert list(chunk.columns) == list(contract.columns)
    assert chunk["Day Mins"].str.contains(",").all() and set(chunk["Churn?"]) <= {"TRUE", "FALSE"}
