"""The approval gate's rules: when a promotion waits for a person, whom it asks, what the
request says, and what an answer (or none) means for the champion."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from churn.approval import (
    APPROVE,
    REJECT,
    approval_needs,
    approval_outcome,
    approval_request,
    approval_task_doc,
    approving_roles,
    promotes,
    respondents,
)
from churn.documents import ConfigurationError, parse_document
from churn.handoffs import ApprovalOutcome, EvaluateResult
from churn.settings import ApprovalsConfig, PipelineConfig, pipeline_config
from tests.conftest import PROJECT_DIR, SCORE_DATE, run_context

APPROVALS = ApprovalsConfig(
    max_unapproved_auc_change=0.02,
    response_timeout_hours=12,
    users={"data_scientist": ("dana", "sam"), "mlops_engineer": ("ops",)},
)
RUN_URL = "http://mlflow.example/#/experiments/1/runs/abc?workflowType=machine_learning"
CHAMPION_URL = "http://mlflow.example/#/models/churn-classifier/versions/3?workflowType=machine_learning"
DRIFT_EVENT = {
    "score_date": "2026-11-28",
    "drifted_features": {"MonthlyCharges": 0.4123, "tenure": 0.3011},
    "prediction_psi": 0.15,
}


def _needs(challenger=0.85, champion=0.80, *, promote=True, drift=False):
    return approval_needs(
        promote=promote,
        challenger_auc=challenger,
        champion_auc=champion,
        max_unapproved_auc_change=0.02,
        drift_triggered=drift,
    )


def _evaluated(challenger=0.85, champion=0.80, *, promote=True, version="3") -> EvaluateResult:
    compared = champion is not None
    return EvaluateResult(
        run=run_context(Path("/tmp/run")),
        metrics={"test_roc_auc": 0.8612, "test_brier": 0.1357},
        champion_version=version,
        champion_test_roc_auc=champion,
        challenger_comparison_roc_auc=challenger if compared else None,
        comparison_rows=400 if compared else None,
        comparison_positives=100 if compared else None,
        challenger_comparison_metrics={"test_roc_auc": challenger, "test_brier": 0.1400} if compared else None,
        champion_comparison_metrics={"test_roc_auc": champion, "test_brier": 0.1525} if compared else None,
        promote=promote,
        reason=f"challenger {challenger:.4f} >= champion {champion:.4f} on 400 test rows (100 churned) neither "
        "model was trained on"
        if compared
        else "no champion yet; challenger clears the floor 0.7000",
    )


def _request(evaluated=None, *, drift=False, events=(), champion_url=CHAMPION_URL):
    return approval_request(
        evaluated or _evaluated(),
        approvals=APPROVALS,
        drift_triggered=drift,
        drift_events=list(events),
        challenger_run_url=RUN_URL,
        champion_version_url=champion_url,
    )


@pytest.mark.parametrize(("challenger", "champion"), [(0.85, 0.80), (0.75, 0.80)])
def test_a_change_beyond_the_margin_either_way_asks_model_evaluations_accountable(challenger, champion):
    [need] = _needs(challenger, champion)
    assert need.phase == "Model Evaluation"
    assert f"{challenger - champion:+.4f}" in need.reason and "0.0200 allowed" in need.reason


@pytest.mark.parametrize(
    ("challenger", "champion", "promote"),
    [
        (0.81, 0.80, True),  # within the margin
        (0.82, 0.80, True),  # exactly the margin: allowed
        (0.85, None, True),  # no champion (or one that cannot score these rows): no change to measure
        (0.85, 0.80, False),  # nothing is promoted, nothing to approve
    ],
)
def test_no_approval_within_the_margin_without_a_champion_or_without_a_promotion(challenger, champion, promote):
    assert _needs(challenger, champion, promote=promote) == []


def test_a_drift_triggered_run_always_asks_retrainings_accountable():
    [need] = _needs(0.81, 0.80, drift=True)
    assert need.phase == "Retraining" and "drift" in need.reason
    assert [need.phase for need in _needs(0.90, 0.80, drift=True)] == ["Model Evaluation", "Retraining"]
    assert _needs(0.90, 0.80, promote=False, drift=True) == []


def test_a_promotion_that_needs_no_approval_makes_no_request():
    assert _request(_evaluated(0.81, 0.80)) is None
    assert _request(_evaluated(0.95, 0.80, promote=False)) is None


def test_the_request_is_assigned_to_the_users_of_the_accountable_roles():
    large_change = _request()
    assert large_change.accountable_roles == ["data_scientist"]
    assert large_change.respondents == ["dana", "sam"]
    drift_only = _request(_evaluated(0.81, 0.80), drift=True)
    assert drift_only.accountable_roles == ["mlops_engineer"] and drift_only.respondents == ["ops"]
    both = _request(drift=True)
    assert both.accountable_roles == ["data_scientist", "mlops_engineer"]
    assert both.respondents == ["dana", "sam", "ops"]


def test_a_role_without_users_is_refused_rather_than_open_to_everyone():
    with pytest.raises(ConfigurationError, match="no Airflow user for mlops_engineer"):
        respondents(["data_scientist", "mlops_engineer"], ApprovalsConfig(users={"data_scientist": ("dana",)}))
    with pytest.raises(ConfigurationError, match="no Airflow user for data_scientist"):
        approval_request(
            _evaluated(),
            approvals=ApprovalsConfig(users={}),
            drift_triggered=False,
            challenger_run_url=RUN_URL,
            champion_version_url=None,
        )


def test_the_request_shows_both_models_metrics_the_margin_what_drifted_and_links():
    request = _request(drift=True, events=[DRIFT_EVENT])
    assert request.subject == (
        f"Promote the churn model of {SCORE_DATE}? Test ROC AUC 0.850, champion's 0.800; a drift-triggered run"
    )
    body = request.body
    for shown in (
        "Both models scored the same 400 test rows (100 churned): the challenger's test rows the champion\n"
        "was never trained on.",
        "| metric | challenger | champion version 3 | difference |",
        "| ROC AUC | 0.8500 | 0.8000 | +0.0500 |",
        "| Brier score (lower is better) | 0.1400 | 0.1525 | -0.0125 |",
        "On all its held-out test rows the challenger's ROC AUC is 0.8612",
        "test ROC AUC changes by +0.0500 from the champion's, more than the 0.0200 allowed",
        "(Model Evaluation)",
        "(Retraining)",
        "A change of test ROC AUC up to 0.0200 needs no approval.",
        "answer within 12 h, keeps champion version 3",
        "| MonthlyCharges | 0.4123 |",
        "| tenure | 0.3011 |",
        "- prediction psi: 0.15",
        "- score date: 2026-11-28",
        f"[the challenger's MLflow run]({RUN_URL}): its metrics",
        "under Artifacts its card (`challenger_card.md`",
        f"[champion version 3 and its model card]({CHAMPION_URL})",
        "manual__2026-11-29T02:00:00+00:00",
    ):
        assert shown in body, shown
    assert "| — |" not in body


def test_a_first_model_or_an_unmeasured_champion_is_said_so_instead_of_dashes():
    first = _evaluated(0.85, None, version=None)
    drift_first = _request(first, drift=True, champion_url=None)
    assert "This is the first model: there is no champion to compare it with." in drift_first.body
    assert "| metric | challenger |\n|---|---|\n| ROC AUC | 0.8612 |\n| Brier score" in drift_first.body
    assert "—" not in drift_first.body and "model card]" not in drift_first.body
    assert "answer within 12 h, promotes nothing: with no champion yet, the date is then not scored" in (
        drift_first.body
    )
    unmeasured = _request(_evaluated(0.85, None), drift=True)
    assert "Champion version 3 was not measured on the challenger's test rows" in unmeasured.body
    assert "difference" not in unmeasured.body


def test_a_request_not_triggered_by_drift_has_no_drift_section():
    assert "What drifted" not in _request().body
    assert "carry no details" in _request(drift=True).body


@pytest.mark.parametrize(
    ("chosen", "responder", "decision", "allows"),
    [
        ([APPROVE], "dana", "approved", True),
        ([REJECT], "dana", "rejected", False),
        # At the time-out Airflow answers with the default (Reject) on nobody's behalf.
        ([REJECT], None, "timed_out", False),
    ],
)
def test_what_an_answer_means(chosen, responder, decision, allows):
    at = datetime(2026, 11, 30, 4, 10, tzinfo=UTC)
    outcome = approval_outcome(_request(), chosen_options=chosen, responded_by=responder, responded_at=at)
    assert outcome.decision == decision and outcome.allows_promotion is allows
    assert outcome.responded_by == responder and outcome.responded_at == at
    assert outcome.reasons == _request().reasons
    assert ("the champion stays" in outcome.summary()) is not allows


def test_packaging_promotes_only_what_evaluation_promoted_and_a_person_approved_when_asked():
    asked = _evaluated().model_copy(update={"approval": _request()})
    approved, rejected, timed_out = (
        ApprovalOutcome(decision=decision, responded_by="dana")
        for decision in ("approved", "rejected", "timed_out")
    )
    assert promotes(asked, approved)
    assert not promotes(asked, rejected) and not promotes(asked, timed_out)
    # Asked, but never answered (the gate did not run): no promotion.
    assert not promotes(asked, None)
    assert promotes(_evaluated(), ApprovalOutcome(decision="not_needed")) and promotes(_evaluated(), None)
    assert not promotes(_evaluated(promote=False), approved)


def test_the_approvals_configuration_names_known_roles_with_users():
    bundled = pipeline_config().approvals
    assert set(approving_roles()) <= set(bundled.users)
    assert respondents(approving_roles(), bundled)
    document = yaml.safe_load((PROJECT_DIR / "include" / "churn" / "pipeline.yaml").read_text())
    for users, message in (
        ({"data_scientists": ["dana"]}, "roles raci.yaml does not name: ['data_scientists']"),
        ({"data_scientist": []}, "roles with no user to approve for them: ['data_scientist']"),
    ):
        document["approvals"]["users"] = users
        with pytest.raises(ConfigurationError, match=re.escape(message)):
            parse_document(PipelineConfig, yaml.safe_dump(document, sort_keys=False), "pipeline.yaml")


def test_the_approve_tasks_page_says_when_it_asks_whom_and_how_long_it_waits():
    doc = approval_task_doc(APPROVALS)
    assert (
        "| Model Evaluation | test ROC AUC differs from the champion's by more than 0.02 | data_scientist " in doc
    )
    assert "| dana, sam |" in doc
    assert "| Retraining | the run was triggered by monitoring's drift event | mlops_engineer | ops |" in doc
    assert "within 12 h" in doc
