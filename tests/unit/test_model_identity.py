"""When a rerun may reuse the version number that scored a date: only while the registry still
gives that number the model (MLflow run and training fingerprint) the date's rows recorded."""

from __future__ import annotations

from datetime import date

from churn.score import ModelOfRecord, replaced_model
from churn.tracking import ModelIdentity
from churn.warehouse import ScoringRecord

DAY = date(2026, 11, 29)
CHOSEN = ModelOfRecord("churn-classifier", "1", "it scored 2026-11-29 before")
WRITTEN = ScoringRecord("1", DAY, "def", "fp-def")


def test_the_same_model_under_the_same_number_is_reused():
    assert replaced_model(WRITTEN, CHOSEN, ModelIdentity("def", "fp-def"), DAY, "churn_scores") is None


def test_another_model_under_the_dates_number_is_refused_saying_what_to_do():
    refused = replaced_model(WRITTEN, CHOSEN, ModelIdentity("abc", "fp-abc"), DAY, "churn_scores")
    assert refused is not None
    assert refused.startswith(
        "version 1 of churn-classifier is now run abc (training fingerprint fp-abc), but the scores of 2026-11-29 "
        "were written by run def (training fingerprint fp-def): the registry was replaced"
    )
    assert "Restore the MLflow store" in refused
    assert "remove its rows of churn_scores with `make forget-date DATE=2026-11-29`" in refused


def test_the_same_run_with_another_fingerprint_is_refused():
    assert replaced_model(WRITTEN, CHOSEN, ModelIdentity("def", "fp-other"), DAY, "churn_scores") is not None


def test_rows_that_recorded_no_identity_and_other_versions_are_not_checked():
    older = ScoringRecord("1", DAY)  # written before the rows named their model's identity
    assert replaced_model(older, CHOSEN, ModelIdentity("abc", "fp-abc"), DAY, "churn_scores") is None
    promoted = ModelOfRecord("churn-classifier", "2", "this run promoted it to 'champion'")
    assert replaced_model(WRITTEN, promoted, ModelIdentity("abc", "fp-abc"), DAY, "churn_scores") is None
