"""Unit tests: how chunks' results of each kind of expectation make the whole snapshot's."""

from __future__ import annotations

import great_expectations as gx
import pyarrow as pa
import pytest
from great_expectations.core import ExpectationValidationResult

from churn.expectations import (
    chunk_failure_is_final,
    combine_chunk_results,
    judged_on_whole_snapshot,
    whole_snapshot_result,
)


def chunk(success: bool, **result) -> ExpectationValidationResult:
    return ExpectationValidationResult(success=success, result=result)


def test_mostly_is_judged_on_the_totals_not_on_each_chunk():
    blanks = gx.expectations.ExpectColumnValuesToNotBeNull(column="TotalCharges", mostly=0.98)
    crowded = chunk(False, element_count=100, unexpected_count=5, partial_unexpected_list=[None] * 5)
    clean = chunk(True, element_count=900, unexpected_count=0, partial_unexpected_list=[])
    assert not chunk_failure_is_final(blanks, crowded)  # the other chunks may dilute it
    combined = combine_chunk_results(blanks, [crowded, clean])
    assert combined.success
    assert combined.result["element_count"] == 1000 and combined.result["unexpected_count"] == 5
    assert combined.result["unexpected_percent"] == pytest.approx(0.5)

    too_many = chunk(False, element_count=900, unexpected_count=20, partial_unexpected_list=[None] * 20)
    assert not combine_chunk_results(blanks, [crowded, too_many]).success  # 2.5% over the file


def test_row_rule_counts_skip_blanks_and_one_bad_row_fails_the_snapshot():
    in_set = gx.expectations.ExpectColumnValuesToBeInSet(column="Contract", value_set=["One year"])
    bad = chunk(
        False,
        element_count=10,
        missing_count=2,
        unexpected_count=1,
        partial_unexpected_list=["Three year"],
        partial_unexpected_index_list=[14],
    )
    good = chunk(True, element_count=10, missing_count=0, unexpected_count=0, partial_unexpected_list=[])
    assert chunk_failure_is_final(in_set, bad)
    combined = combine_chunk_results(in_set, [good, bad])
    assert not combined.success
    assert combined.result["unexpected_percent"] == pytest.approx(100 / 18)  # of the 18 non-blank rows
    assert combined.result["partial_unexpected_list"] == ["Three year"]
    assert combined.result["partial_unexpected_index_list"] == [14]


def test_a_composite_key_is_unique_as_a_whole_not_per_column():
    pair = gx.expectations.ExpectCompoundColumnsToBeUnique(column_list=["branch", "account"])
    assert judged_on_whole_snapshot(pair)
    keys = pa.chunked_array(
        [pa.array(["1|7", "2|7"], pa.large_string()), pa.array(["1|8", "2|7"], pa.large_string())]
    )
    result = whole_snapshot_result(pair, rows=4, column=keys)
    assert not result.success
    assert result.result["partial_unexpected_list"] == ["2|7", "2|7"]
    assert result.result["partial_unexpected_index_list"] == [1, 3]


def test_duplicates_are_found_across_chunks_and_blanks_are_not_duplicates():
    unique = gx.expectations.ExpectColumnValuesToBeUnique(column="customerID")
    assert judged_on_whole_snapshot(unique)
    ids = pa.chunked_array(
        [pa.array(["a", "b", None], pa.large_string()), pa.array(["c", "a", None, "d"], pa.large_string())]
    )
    result = whole_snapshot_result(unique, rows=7, column=ids)
    assert not result.success
    assert result.result["unexpected_count"] == 2 and result.result["missing_count"] == 2
    assert result.result["partial_unexpected_list"] == ["a", "a"]
    assert result.result["partial_unexpected_index_list"] == [0, 4]
    assert whole_snapshot_result(unique, rows=0, column=pa.chunked_array([], pa.large_string())).success


def test_row_count_is_the_chunks_rows_added_up():
    row_count = gx.expectations.ExpectTableRowCountToBeBetween(min_value=500)
    assert judged_on_whole_snapshot(row_count)
    assert whole_snapshot_result(row_count, rows=500, column=None).success
    short = whole_snapshot_result(row_count, rows=499, column=None)
    assert not short.success and short.result == {"observed_value": 499}


def test_an_expectation_without_a_rule_is_refused_not_guessed():
    mean = gx.expectations.ExpectColumnMeanToBeBetween(column="tenure", min_value=0, max_value=72)
    with pytest.raises(ValueError, match="no rule to combine expect_column_mean_to_be_between"):
        combine_chunk_results(mean, [chunk(True, observed_value=30.0)])
