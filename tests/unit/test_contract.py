import re
from pathlib import Path

import pytest

from churn.contract import ContractError, load_contract, parse_contract

MINIMAL = """
name: tiny
id_column: id
label: {column: churned, positive: "1", negative: "0"}
columns:
  id: {type: string, unique: true}
  age: {type: integer, min: 0}
  churned: {type: category, values: ["1", "0"]}
"""


def test_bundled_contract_describes_the_telco_schema(contract):
    assert contract.id_column == "customerID"
    assert contract.label_column == "Churn"
    assert contract.positive_label == "Yes"
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
    tiny = load_contract(str(path))
    assert tiny.name == "tiny"
    assert tiny.feature_columns == ["age"]
    assert tiny.derived_features == ()


def test_fingerprint_changes_with_the_contract_text():
    assert parse_contract(MINIMAL, "a").fingerprint != parse_contract(MINIMAL + "\n# note\n", "b").fingerprint


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (MINIMAL.replace("type: integer", "type: decimal"), r"columns\.age\.type: .* \(got 'decimal'\)"),
        (MINIMAL.replace("id_column: id", ""), "required key 'id_column' is missing"),
        (
            MINIMAL.replace("  age: {type: integer, min: 0}", "  age: {type: integer, minimum: 0}"),
            "unknown key 'columns.age.minimum'",
        ),
        (MINIMAL + "extra_colums: allow\n", "unknown key 'extra_colums'"),
        (MINIMAL.replace('negative: "0"}', 'negative: "0", positve: "1"}'), "unknown key 'label.positve'"),
        (
            MINIMAL + "derived_features:\n  - {name: x, kind: band, column: age, edge: [1]}\n",
            "derived_features.0.band.edge",
        ),
        (
            MINIMAL + "derived_features:\n  - {name: x, kind: ratio, numerator: age, denominator: height}\n",
            "height",
        ),
        (MINIMAL.replace("id_column: id", "id_column: customer"), "'customer' is not among"),
        (
            MINIMAL.replace("unique: true}", "unique: true, max_length: 0}"),
            r"columns\.id\.max_length: .*greater than 0",
        ),
        (
            MINIMAL.replace("unique: true}", "unique: true, max_length: ten}"),
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
