"""The run's parameters as ingest reads them: an unknown name is refused with the known ones."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from churn.run_parameters import RunParameterError, check_score_date, read_run_parameters
from churn.settings import ScoreDateWindow
from tests.conftest import run_parameters

TODAY = date(2026, 11, 30)
WINDOW = ScoreDateWindow(days_back=400, days_ahead=7)

KNOWN = (
    "The known parameters are training_source, scoring_source, contract, score_date, allow_any_score_date, "
    "allow_shrink"
)


def test_a_misspelt_parameter_is_refused_with_the_known_names_and_the_likely_one():
    params = run_parameters("/d/training.csv", "/d/scoring.csv") | {"scoring_sourc": "/d/other.csv"}
    with pytest.raises(RunParameterError) as refused:
        read_run_parameters(params)
    assert str(refused.value) == (
        f"run parameters: unknown key 'scoring_sourc'. {KNOWN}; did you mean 'scoring_source' for 'scoring_sourc'?"
    )


def test_an_unknown_parameter_like_no_known_one_is_refused_without_a_guess():
    params = run_parameters("/d/training.csv", "/d/scoring.csv") | {"rows": 10}
    with pytest.raises(RunParameterError) as refused:
        read_run_parameters(params)
    assert str(refused.value) == f"run parameters: unknown key 'rows'. {KNOWN}"


def test_every_problem_is_named_with_the_unknown_keys():
    params = run_parameters("/d/training.csv", "/d/scoring.csv")
    params["training_sorce"] = params.pop("training_source")
    params["score_date"] = "2026-02-30"
    with pytest.raises(RunParameterError) as refused:
        read_run_parameters(params)
    message = str(refused.value)
    assert "required key 'training_source' is missing" in message
    assert "score_date: no such date (YYYY-MM-DD) (got '2026-02-30')" in message
    assert message.endswith(f"{KNOWN}; did you mean 'training_source' for 'training_sorce'?")


def test_known_parameters_alone_draw_no_list_of_names():
    params = run_parameters("/d/training.csv", "/d/scoring.csv") | {"score_date": "2026-02-30"}
    with pytest.raises(RunParameterError) as refused:
        read_run_parameters(params)
    assert "known parameters" not in str(refused.value)


@pytest.mark.parametrize(
    "score_date",
    [TODAY, TODAY - timedelta(days=1), TODAY - timedelta(days=400), TODAY + timedelta(days=7)],
    ids=["today", "yesterday", "first day of the window", "last day of the window"],
)
def test_a_score_date_inside_the_window_passes_without_a_word(score_date):
    assert check_score_date(score_date, TODAY, WINDOW, allow_any=False) is None


@pytest.mark.parametrize(
    "score_date",
    [TODAY - timedelta(days=401), TODAY + timedelta(days=8), date(2999, 12, 31), date(1999, 1, 1)],
    ids=["a day before the window", "a day after the window", "a mistyped year", "long ago"],
)
def test_a_score_date_outside_the_window_is_refused_naming_the_date_the_window_and_the_override(score_date):
    with pytest.raises(RunParameterError) as refused:
        check_score_date(score_date, TODAY, WINDOW, allow_any=False)
    message = str(refused.value)
    assert f"score_date {score_date} is outside the window of score dates, 2025-10-26 to 2026-12-07" in message
    assert "400 days before to 7 days after 2026-11-30, the day this run was queued for" in message
    assert "score_date_window in pipeline.yaml" in message
    assert message.endswith("trigger the run again with the run parameter allow_any_score_date set to true")


def test_allow_any_score_date_lets_a_date_outside_the_window_through_and_says_so():
    allowed = check_score_date(date(2999, 12, 31), TODAY, WINDOW, allow_any=True)
    assert allowed is not None and "2999-12-31 is outside the window" in allowed
    assert allowed.endswith("allowed by the run parameter allow_any_score_date")


def test_the_window_is_configurable():
    narrow = ScoreDateWindow(days_back=0, days_ahead=0)
    assert check_score_date(TODAY, TODAY, narrow, allow_any=False) is None
    with pytest.raises(RunParameterError, match="2026-11-30 to 2026-11-30"):
        check_score_date(TODAY - timedelta(days=1), TODAY, narrow, allow_any=False)


def test_the_overrides_are_booleans_that_default_to_false():
    parameters = read_run_parameters(run_parameters("/d/training.csv", "/d/scoring.csv"))
    assert parameters.allow_any_score_date is False and parameters.allow_shrink is False
    overridden = run_parameters("/d/training.csv", "/d/scoring.csv") | {"allow_shrink": True}
    assert read_run_parameters(overridden).allow_shrink is True
    with pytest.raises(RunParameterError, match="allow_shrink"):
        read_run_parameters(overridden | {"allow_shrink": "maybe"})
