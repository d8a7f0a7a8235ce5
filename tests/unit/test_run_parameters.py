"""The run's parameters as ingest reads them: an unknown name is refused with the known ones."""

from __future__ import annotations

import pytest

from churn.run_parameters import RunParameterError, read_run_parameters
from tests.conftest import run_parameters

KNOWN = "The known parameters are training_source, scoring_source, contract, score_date"


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
