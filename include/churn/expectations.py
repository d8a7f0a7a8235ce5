"""The Great Expectations suites a data contract implies, built from the contract alone.

Validation runs in two stages. The text stage sees every cell as it was written, so a bad
value is reported as the file holds it ("twelve" in ``tenure``); it checks the columns, the
ids, the number formats, text value sets and blank rates. The typed stage runs once the
numbers are numbers and checks numeric ranges and value sets.
"""

from __future__ import annotations

from typing import Any

import great_expectations as gx

from churn.contract import ColumnSpec, Contract

# ASCII digits only: \d would admit other scripts' digits, which pandas cannot parse.
INTEGER_TEXT = r"^[+-]?[0-9]+(?:\.0*)?$"
NUMBER_TEXT = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"


def column_text_expectations(spec: ColumnSpec) -> list[Any]:
    """One column's checks on its text: blanks, uniqueness, length, number format, text values."""
    expectations: list[Any] = []
    if spec.max_null_fraction < 1.0:
        expectations.append(
            gx.expectations.ExpectColumnValuesToNotBeNull(
                column=spec.name, mostly=round(1.0 - spec.max_null_fraction, 6)
            )
        )
    if spec.unique:
        expectations.append(gx.expectations.ExpectColumnValuesToBeUnique(column=spec.name))
    if spec.max_length is not None:
        expectations.append(
            gx.expectations.ExpectColumnValueLengthsToBeBetween(column=spec.name, max_value=spec.max_length)
        )
    if spec.is_numeric:
        expectations.append(
            gx.expectations.ExpectColumnValuesToMatchRegex(
                column=spec.name, regex=INTEGER_TEXT if spec.type == "integer" else NUMBER_TEXT
            )
        )
    # Numeric value sets wait for the typed stage, where "1.0" and "1" are the same number.
    if spec.values is not None and not spec.is_numeric:
        expectations.append(
            gx.expectations.ExpectColumnValuesToBeInSet(
                column=spec.name, value_set=[str(value) for value in spec.values]
            )
        )
    return expectations


def text_stage_expectations(contract: Contract, columns: list[str], *, labelled: bool) -> list[Any]:
    """Table shape, then per-column checks for the contract's columns that are present."""
    expected = contract.expected_columns(labelled=labelled)
    minimum_rows = contract.min_training_rows if labelled else 1
    expectations: list[Any] = [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=minimum_rows),
        gx.expectations.ExpectTableColumnsToMatchSet(
            column_set=expected, exact_match=contract.extra_columns == "reject"
        ),
    ]
    for name in expected:
        if name in columns:
            expectations += column_text_expectations(contract.columns[name])
    if labelled and contract.label_column in columns:
        expectations.append(
            gx.expectations.ExpectColumnDistinctValuesToContainSet(
                column=contract.label_column,
                value_set=[contract.positive_label, contract.negative_label],
            )
        )
    return expectations


def typed_stage_expectations(contract: Contract, *, labelled: bool) -> list[Any]:
    """Numeric ranges and value sets, which only make sense once the numbers are numbers."""
    expectations: list[Any] = []
    for name in contract.expected_columns(labelled=labelled):
        spec = contract.columns[name]
        if not spec.is_numeric:
            continue
        if spec.min is not None or spec.max is not None:
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeBetween(column=name, min_value=spec.min, max_value=spec.max)
            )
        if spec.values is not None:
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeInSet(column=name, value_set=list(spec.values))
            )
    return expectations


def unreadable_file_expectation(problem: str) -> Any:
    """A check that fails on the empty table standing in for a file that cannot be read,
    described by why, so the Data Docs show the problem like any other failed rule."""
    return gx.expectations.ExpectTableRowCountToBeBetween(min_value=1, description=problem)
