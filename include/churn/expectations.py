"""The Great Expectations suites a data contract implies, built from the contract alone.

Validation runs in two stages. The text stage sees every cell as it was written, so a bad
value is reported as the file holds it ("twelve" in ``tenure``); it checks the columns, the
ids, the number formats, text value sets and blank rates. The typed stage sees the numbers
as numbers (a cell that is not one counts as blank there, the text stage having reported
it) and checks numeric ranges and value sets. Both stages always run, so one report holds
every problem of a snapshot.

A snapshot is validated a chunk of rows at a time, so memory holds one chunk, never the table.
How the chunks' results of each kind of expectation make its result on the whole snapshot is
said here, beside the suites, so a new kind of expectation cannot join a suite unnoticed:
:func:`combine_chunk_results` refuses one it has no rule for rather than guess.

- Row rules (column map expectations: blanks, lengths, formats, value sets, ranges) judge each
  row alone, so their chunks' counts add up; ``mostly`` (the blank rate) is judged on the totals,
  as one chunk may hold more blanks than the limit while the snapshot holds fewer.
- The columns are the file's header (or Parquet schema), the same in every chunk.
- The row count and uniqueness cannot be read off any chunk (a duplicate's twin may be in
  another chunk), so :func:`whole_snapshot_result` judges them on the whole snapshot: the
  chunks' rows added up, and the column (or a composite key's columns joined) alone, as
  Arrow, rather than the table.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import great_expectations as gx
import pyarrow as pa
import pyarrow.compute as pc
from great_expectations.core import ExpectationValidationResult
from great_expectations.expectations.expectation import ColumnMapExpectation

from churn.contract import ColumnSpec, Contract
from churn.errors import shortened

# Offending values (and their rows) a result keeps, as many as Great Expectations' SUMMARY keeps.
RESULT_EXAMPLES = 20
# The largest float: a number column's typed values stay within it even where the contract sets
# no bound, as text such as "1e400" reads as infinity, which no model (nor leakage check) takes.
LARGEST_FLOAT = sys.float_info.max


def number_patterns(decimal: str) -> dict[str, str]:
    """The text an integer and a number may be written as, with ``decimal`` as the decimal
    mark. ASCII digits only: \\d would admit other scripts' digits, which pandas cannot parse."""
    mark = re.escape(decimal)
    return {
        # At most 18 digits: every such integer fits the typed copy's 64-bit integers.
        "integer": rf"^[+-]?[0-9]{{1,18}}(?:{mark}0*)?$",
        "number": rf"^[+-]?(?:[0-9]+(?:{mark}[0-9]*)?|{mark}[0-9]+)(?:[eE][+-]?[0-9]+)?$",
    }


def column_text_expectations(spec: ColumnSpec, contract: Contract, decimal: str = ".") -> list[Any]:
    """One column's checks on its text: blanks, uniqueness, length, number format (``decimal``
    the file's decimal mark), text values."""
    expectations: list[Any] = []
    if spec.max_null_fraction < 1.0:
        expectations.append(
            gx.expectations.ExpectColumnValuesToNotBeNull(
                column=spec.name, mostly=round(1.0 - spec.max_null_fraction, 6)
            )
        )
    if spec.unique or contract.id_columns == [spec.name]:
        expectations.append(gx.expectations.ExpectColumnValuesToBeUnique(column=spec.name))
    if spec.max_length is not None:
        expectations.append(
            gx.expectations.ExpectColumnValueLengthsToBeBetween(column=spec.name, max_value=spec.max_length)
        )
    if spec.is_numeric:
        expectations.append(
            gx.expectations.ExpectColumnValuesToMatchRegex(
                column=spec.name, regex=number_patterns(decimal)[spec.type]
            )
        )
    # Numeric value sets wait for the typed stage, where "1.0" and "1" are the same number.
    allowed = contract.allowed_values(spec.name)
    if allowed is not None and not spec.is_numeric:
        expectations.append(
            gx.expectations.ExpectColumnValuesToBeInSet(
                column=spec.name, value_set=[str(value) for value in allowed]
            )
        )
    return expectations


def text_stage_expectations(
    contract: Contract, columns: list[str], *, labelled: bool, decimal: str = "."
) -> list[Any]:
    """Table shape, the customer key, then per-column checks for the contract's columns that are present."""
    expected = contract.expected_columns(labelled=labelled)
    minimum_rows = contract.min_training_rows if labelled else 1
    expectations: list[Any] = [
        gx.expectations.ExpectTableRowCountToBeBetween(min_value=minimum_rows),
        gx.expectations.ExpectTableColumnsToMatchSet(
            column_set=expected, exact_match=contract.extra_columns == "reject"
        ),
    ]
    if len(contract.id_columns) > 1 and set(contract.id_columns) <= set(columns):
        expectations.append(gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=contract.id_columns))
    for name in expected:
        if name in columns:
            expectations += column_text_expectations(contract.columns[name], contract, decimal)
    return expectations


def typed_stage_expectations(contract: Contract, columns: list[str], *, labelled: bool) -> list[Any]:
    """Numeric ranges and value sets of the contract's columns that are present, which only
    make sense once the numbers are numbers."""
    expectations: list[Any] = []
    for name in contract.expected_columns(labelled=labelled):
        spec = contract.columns[name]
        if name not in columns or not spec.is_numeric or spec.role == "id":  # ids stay text: see validate.conform
            continue
        if spec.type == "number" or spec.min is not None or spec.max is not None:
            low = -LARGEST_FLOAT if spec.min is None and spec.type == "number" else spec.min
            high = LARGEST_FLOAT if spec.max is None and spec.type == "number" else spec.max
            expectations.append(
                gx.expectations.ExpectColumnValuesToBeBetween(column=name, min_value=low, max_value=high)
            )
        allowed = contract.allowed_values(name)
        if allowed is not None:
            expectations.append(gx.expectations.ExpectColumnValuesToBeInSet(column=name, value_set=allowed))
    return expectations


def unreadable_file_expectation(problem: str) -> Any:
    """A check that fails on the empty table standing in for a file that cannot be read,
    described by why, so the Data Docs show the problem like any other failed rule."""
    return gx.expectations.ExpectTableRowCountToBeBetween(min_value=1, description=problem)


# Uniqueness of one column, and of a composite key's columns together.
UNIQUENESS = (gx.expectations.ExpectColumnValuesToBeUnique, gx.expectations.ExpectCompoundColumnsToBeUnique)


def judged_on_whole_snapshot(expectation: Any) -> bool:
    """Whether no chunk can answer ``expectation``: the row count, and uniqueness (a value's
    twin may sit in another chunk). :func:`whole_snapshot_result` judges these."""
    return isinstance(expectation, (gx.expectations.ExpectTableRowCountToBeBetween, *UNIQUENESS))


def could_not_run(result: Any) -> bool:
    return bool(result.exception_info and result.exception_info.get("raised_exception"))


def chunk_failure_is_final(expectation: Any, result: Any) -> bool:
    """Whether ``expectation`` failing on one chunk fails the whole snapshot, whatever the other
    chunks hold: a row rule without ``mostly`` (offending rows only add up), the columns, or a
    check that could not run. A ``mostly`` rule is judged on the totals, and a value missing
    from one chunk may be in the next."""
    if result.success:
        return False
    if could_not_run(result) or isinstance(expectation, gx.expectations.ExpectTableColumnsToMatchSet):
        return True
    return isinstance(expectation, ColumnMapExpectation) and expectation.mostly >= 1.0


def combine_chunk_results(expectation: Any, results: list[Any]) -> Any:
    """``expectation``'s result on the whole snapshot from its results on each chunk, in file order."""
    failed_to_run = next((result for result in results if could_not_run(result)), None)
    if failed_to_run is not None:
        return failed_to_run
    if isinstance(expectation, gx.expectations.ExpectTableColumnsToMatchSet):
        return results[0]
    if isinstance(expectation, ColumnMapExpectation):
        counts = [result.result for result in results]
        return column_map_result(
            expectation,
            element_count=sum(count["element_count"] for count in counts),
            missing_count=sum(count.get("missing_count", 0) for count in counts),
            unexpected_count=sum(count["unexpected_count"] for count in counts),
            examples=[value for count in counts for value in count.get("partial_unexpected_list", [])],
            rows=[row for count in counts for row in count.get("partial_unexpected_index_list", [])],
        )
    raise ValueError(f"no rule to combine {expectation.expectation_type} over the chunks of a snapshot")


def whole_snapshot_result(expectation: Any, *, rows: int, column: pa.ChunkedArray | None) -> Any:
    """The result of an expectation no chunk can answer (see :func:`judged_on_whole_snapshot`),
    from the snapshot's number of rows and, for uniqueness, its column (or composite key) as text."""
    if isinstance(expectation, gx.expectations.ExpectTableRowCountToBeBetween):
        low, high = expectation.min_value, expectation.max_value
        return _result(
            expectation, (low is None or rows >= low) and (high is None or rows <= high), {"observed_value": rows}
        )
    # Like Great Expectations, every row whose value occurs more than once is unexpected; blanks are skipped.
    # One bit a row, in one piece: indices_nonzero crashes on an empty chunked array (pyarrow 25).
    duplicate = pc.fill_null(pc.is_in(column, value_set=repeated_values(column)), False).combine_chunks()
    first_rows = pc.indices_nonzero(duplicate)[:RESULT_EXAMPLES]
    return column_map_result(
        expectation,
        element_count=len(column),
        missing_count=column.null_count,
        unexpected_count=pc.sum(duplicate).as_py() or 0,
        examples=column.take(first_rows).to_pylist(),
        rows=first_rows.to_pylist(),
    )


def repeated_values(column: pa.ChunkedArray) -> pa.Array:
    """The values that occur more than once in ``column``, blanks aside. Sorting a copy of the
    column costs less than half the memory of counting every value in a hash table (Arrow's
    value_counts: about 90 bytes a row), at a few seconds per 10 million rows."""
    ordered = column.take(pc.sort_indices(column))
    same_as_previous = pc.equal(ordered.slice(1), ordered.slice(0, max(len(ordered) - 1, 0)))
    return pc.unique(ordered.slice(1).filter(same_as_previous))


def column_map_result(
    expectation: Any, *, element_count: int, missing_count: int, unexpected_count: int, examples: list, rows: list
) -> Any:
    """A row rule's result on counts over the whole snapshot, worded as Great Expectations words
    it, with ``mostly`` judged on these totals. ``examples`` and ``rows``: the first offending
    values and their positions in the file."""
    # Not-null counts blanks among all rows; every other row rule skips blanks and judges the rest.
    if isinstance(expectation, gx.expectations.ExpectColumnValuesToNotBeNull):
        considered, missing = element_count, {}
    else:
        considered = element_count - missing_count
        missing = {
            "missing_count": missing_count,
            "missing_percent": missing_count / element_count * 100 if element_count else None,
        }
    success = considered == 0 or (considered - unexpected_count) / considered >= expectation.mostly
    return _result(
        expectation,
        success,
        {
            "element_count": element_count,
            "unexpected_count": unexpected_count,
            "unexpected_percent": unexpected_count / considered * 100 if considered else None,
            **missing,
            # Cut to a readable length: the message and the Data Docs quote them.
            "partial_unexpected_list": [
                shortened(value) if isinstance(value, str) else value for value in examples[:RESULT_EXAMPLES]
            ],
            "partial_unexpected_index_list": rows[:RESULT_EXAMPLES],
        },
    )


def _result(expectation: Any, success: bool, result: dict[str, Any]) -> Any:
    return ExpectationValidationResult(
        success=success, expectation_config=expectation.configuration, result=result
    )
