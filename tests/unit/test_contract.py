import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn.contract import ContractError, load_contract, parse_contract
from churn.model import model_columns

MINIMAL = """
name: tiny
columns:
  id: {type: string, role: id}
  age: {type: integer, min: 0}
  churned: {type: integer, role: label, positive: 1, negative: 0}
"""


def tiny(columns: str, extra: str = "") -> str:
    """A contract of ``columns`` (YAML lines under ``columns:``) and ``extra`` top-level keys."""
    return f"name: tiny\n{extra}columns:\n{columns}"


def test_bundled_contract_describes_the_telco_schema(contract):
    assert contract.id_columns == ["customerID"]
    assert contract.label_column == "Churn"
    assert contract.label.positive == {"Yes"} and contract.label.negative == {"No"}
    assert len(contract.columns) == 21
    assert "customerID" not in contract.feature_columns
    assert "Churn" not in contract.feature_columns
    assert contract.columns["TotalCharges"].nullable
    assert not contract.columns["MonthlyCharges"].nullable


def test_scoring_snapshots_need_no_label(contract):
    assert "Churn" not in contract.expected_columns(labelled=False)
    assert "Churn" in contract.expected_columns(labelled=True)


def test_another_table_needs_only_its_own_contract_file(tmp_path: Path):
    path = tmp_path / "tiny.yaml"
    path.write_text(MINIMAL)
    loaded = load_contract(str(path))
    assert loaded.name == "tiny"
    assert loaded.feature_columns == ["age"]
    assert loaded.derived_features == ()


def test_ignored_and_leaking_columns_are_validated_but_never_modelled():
    contract = parse_contract(
        tiny(
            "  RowNumber: {type: integer, role: ignore, min: 1}\n"
            "  id: {type: integer, role: id}\n"
            "  Surname: {type: string, role: ignore}\n"
            "  Complain: {type: integer, role: leak, values: [0, 1]}\n"
            "  age: {type: integer}\n"
            "  Exited: {type: integer, role: label, positive: 1, negative: 0}\n"
        ),
        "t",
    )
    assert contract.feature_columns == ["age"]
    assert set(contract.not_modelled) == {"RowNumber", "Surname", "Complain"}
    assert "recorded after the outcome" in contract.not_modelled["Complain"]
    assert "Complain" in contract.expected_columns(labelled=False)


def test_a_coded_number_can_be_modelled_as_a_category():
    contract = parse_contract(
        tiny(
            "  id: {type: string, role: id}\n"
            "  area_code: {type: integer, model_as: categorical}\n"
            "  international_plan: {type: boolean}\n"
            "  calls: {type: integer}\n"
            "  churn: {type: boolean, role: label, positive: true, negative: false}\n"
        ),
        "t",
    )
    assert model_columns(contract) == (["international_plan", "calls"], ["area_code"])


def test_several_id_columns_make_one_composite_customer_id():
    contract = parse_contract(
        tiny(
            "  branch: {type: string, role: id}\n"
            "  account: {type: integer, role: id}\n"
            "  age: {type: integer}\n"
            "  churned: {type: string, role: label, positive: Y, negative: N}\n"
        ),
        "t",
    )
    frame = pd.DataFrame({"branch": ["north", "south"], "account": ["0042", "7"]})
    assert contract.customer_ids(frame).tolist() == ["north|0042", "south|7"]


@pytest.mark.parametrize(
    ("column", "labels", "positive"),
    [
        # Numbers compare as numbers: 1, 1.0 and true are the same positive.
        (
            "{type: integer, role: label, positive: [1, true], negative: 0}",
            pd.array([1, 0, None], "Int64"),
            [1, 0, 0],
        ),
        ("{type: number, role: label, positive: '1', negative: 0}", pd.Series([1.0, 0.0, 1.0]), [1, 0, 1]),
        # Text compares as text, with every spelling the contract lists.
        (
            "{type: category, role: label, positive: ['Yes', 'yes', 1, true], negative: ['No', 0, false]}",
            pd.array(["yes", "No", "1", "TRUE", "Yes", "no", None], "string"),
            [1, 0, 1, 1, 1, 0, 0],
        ),
        (
            "{type: string, role: label, positive: Attrited Customer, negative: Existing Customer}",
            pd.array(["Existing Customer", "Attrited Customer"], "string"),
            [0, 1],
        ),
        # Booleans compare as booleans, however the contract spells them.
        (
            "{type: boolean, role: label, positive: [true, 'TRUE'], negative: 0}",
            pd.array([True, False, None]),
            [1, 0, 0],
        ),
    ],
)
def test_one_function_decides_which_labels_are_positive(column, labels, positive):
    contract = parse_contract(
        tiny(f"  id: {{type: string, role: id}}\n  x: {{type: integer}}\n  y: {column}\n"), "t"
    )
    assert contract.is_positive(pd.Series(labels)).tolist() == [bool(p) for p in positive]
    assert contract.is_positive(pd.Series(labels)).dtype == np.bool_


def test_fingerprint_changes_with_the_contract_text():
    assert parse_contract(MINIMAL, "a").fingerprint != parse_contract(MINIMAL + "\n# note\n", "b").fingerprint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL.replace("type: integer, min", "type: decimal, min"), r"columns\.age\.type: .* \(got 'decimal'\)"),
        (
            MINIMAL.replace("{type: string, role: id}", "{type: string}"),
            r"no column identifies a customer.*role: id",
        ),
        ("id_column: id\n" + MINIMAL, r"'id_column' and 'label' are now roles of the columns"),
        (
            MINIMAL.replace(", role: label, positive: 1, negative: 0", ""),
            "exactly one column must have role: label",
        ),
        (
            MINIMAL.replace(
                "age: {type: integer, min: 0}", "age: {type: integer, role: label, positive: 1, negative: 0}"
            ),
            "not 2",
        ),
        (MINIMAL.replace("negative: 0", "negative: true"), r"\[1\.0\] are both positive and negative"),
        (
            MINIMAL.replace("positive: 1", "positive: 'Yes'"),
            "label 'Yes' is not a number, but column 'churned' is integer",
        ),
        (MINIMAL.replace(", negative: 0", ""), "a label column declares its classes with positive and negative"),
        (MINIMAL.replace("min: 0}", "min: 0, positive: 1}"), "and only a label column does"),
        (MINIMAL.replace("role: label", "role: target"), r"columns\.churned\.role: .*\(got 'target'\)"),
        (
            MINIMAL.replace("{type: string, role: id}", "{type: string, role: id, nullable: true}"),
            "cannot be nullable",
        ),
        (MINIMAL.replace("{type: string, role: id}", "{type: number, role: id}"), "an id column is string"),
        (MINIMAL.replace("min: 0}", "min: 0, model_as: text}"), r"model_as: .*\(got 'text'\)"),
        (
            MINIMAL.replace("{type: string, role: id}", "{type: string, role: id, model_as: categorical}"),
            "model_as applies to features only",
        ),
        (
            MINIMAL + "  plan: {type: category, model_as: numeric}\n",
            "a category column cannot be modelled as numeric",
        ),
        (MINIMAL + "  plan: {type: category, min: 1}\n", "min and max apply to integer and number columns only"),
        (
            MINIMAL + "  flag: {type: boolean, values: [Y, N]}\n",
            "a boolean column's values are the csv true_values",
        ),
        (
            MINIMAL.replace("  age: {type: integer, min: 0}", "  age: {type: integer, minimum: 0}"),
            "unknown key 'columns.age.minimum'",
        ),
        (MINIMAL + "extra_colums: allow\n", "unknown key 'extra_colums'"),
        (MINIMAL + "csv: {delimiter: ',', decimal: ','}\n", "decimal and delimiter are both ','"),
        (MINIMAL + "csv: {encoding: utf-9}\n", "unknown encoding 'utf-9'"),
        (MINIMAL + "csv: {delimiter: ':'}\n", r"csv\.delimiter"),
        (
            MINIMAL + "csv: {true_values: [Y], false_values: [Y, N]}\n",
            r"\['Y'\] are both true_values and false_values",
        ),
        (
            MINIMAL + "derived_features:\n  - {name: x, kind: band, column: age, edge: [1]}\n",
            "derived_features.0.band.edge",
        ),
        (
            MINIMAL + "derived_features:\n  - {name: x, kind: ratio, numerator: age, denominator: height}\n",
            "uses columns that are not features: \\['height'\\]",
        ),
        (
            MINIMAL.replace("{type: string, role: id}", "{type: string, role: id, max_length: 0}"),
            r"columns\.id\.max_length: .*greater than 0",
        ),
        (
            MINIMAL.replace("{type: string, role: id}", "{type: string, role: id, max_length: ten}"),
            r"columns\.id\.max_length: .*integer",
        ),
        (MINIMAL.replace("min: 0}", 'values: ["1", "2"]}'), "values of a numeric column must be numbers"),
        ("name: [unclosed", "not valid YAML"),
        ("- just a list", "mapping"),
    ],
)
def test_malformed_contracts_are_refused_with_the_reason(text, message):
    with pytest.raises(ContractError, match=r"^contract /contracts/tiny\.yaml") as caught:
        parse_contract(text, "/contracts/tiny.yaml")
    assert re.search(message, str(caught.value)), str(caught.value)


def test_unknown_contract_reference_says_so():
    with pytest.raises(ContractError, match="neither a bundled contract nor an existing file"):
        load_contract("no_such_contract")
