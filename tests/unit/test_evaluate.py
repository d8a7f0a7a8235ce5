from datetime import date

import mlflow
import numpy as np
import pytest

from churn.evaluate import (
    classification_metrics,
    decide_promotion,
    evaluate_challenger,
    phases_to_skip,
    top_decile_lift,
    why_held_back,
    with_approval_request,
)
from churn.handoffs import EvaluateResult
from churn.model import label_vector, model_inputs
from churn.settings import QualityGates
from churn.storage import read_parquet
from churn.tracking import use_mlflow
from churn.warehouse import ScoringRecord
from tests.conftest import SCORE_DATE, run_context


def test_top_decile_lift_of_a_perfect_ranking():
    labels = np.array([1] + [0] * 9)
    assert top_decile_lift(labels, np.linspace(1, 0, 10)) == pytest.approx(10.0)


def test_lift_of_a_ranking_that_finds_nobody_is_zero():
    labels = np.array([1] + [0] * 9)
    assert top_decile_lift(labels, np.linspace(0, 1, 10)) == 0.0


def test_lift_is_undefined_without_churners():
    with pytest.raises(ValueError, match="no customer churned"):
        top_decile_lift(np.zeros(10), np.linspace(0, 1, 10))


def test_metrics_of_a_confident_perfect_model():
    labels = np.array([0, 0, 1, 1])
    metrics = classification_metrics(labels, np.array([0.0, 0.1, 0.9, 1.0]), threshold=0.5)
    assert metrics["test_roc_auc"] == 1.0
    assert metrics["test_precision_at_threshold"] == metrics["test_recall_at_threshold"] == 1.0
    assert metrics["test_brier"] == pytest.approx(0.005)


@pytest.mark.parametrize(
    ("challenger", "champion", "promote", "reason"),
    [
        (0.65, None, False, "below the quality floor"),
        (0.65, 0.60, False, "below the quality floor"),
        (0.80, None, True, "no champion yet"),
        (0.80, 0.80, True, ">="),
        (0.81, 0.80, True, ">="),
        (0.79, 0.80, False, "<"),
    ],
)
def test_promotion_rule(challenger, champion, promote, reason):
    decision = decide_promotion(challenger, champion, min_auc=0.70)
    assert decision.promote is promote
    assert reason in decision.reason


NOTHING_SCORED = ScoringRecord(None, None)


@pytest.mark.parametrize(
    ("score_date", "promoted_for", "record", "held_back"),
    [
        (date(2026, 11, 29), None, NOTHING_SCORED, None),
        (date(2026, 11, 29), date(2026, 11, 28), ScoringRecord(None, date(2026, 11, 28)), None),
        (date(2026, 11, 28), date(2026, 11, 28), NOTHING_SCORED, None),
        (
            date(2026, 11, 29),
            date(2026, 11, 29),
            ScoringRecord("4", date(2026, 11, 29)),
            "scored before by version 4",
        ),
        (date(2026, 11, 20), date(2026, 11, 28), NOTHING_SCORED, "before 2026-11-28"),
        (date(2026, 11, 25), date(2026, 11, 20), ScoringRecord(None, date(2026, 11, 27)), "before 2026-11-27"),
        (date(2026, 11, 20), None, ScoringRecord(None, date(2026, 11, 27)), "backfills"),
    ],
)
def test_reruns_and_backfills_are_held_back(score_date, promoted_for, record, held_back):
    reason = why_held_back(score_date, promoted_for, record)
    if held_back is None:
        assert reason is None
    else:
        assert held_back in reason and "never move the champion" in reason


@pytest.mark.parametrize(
    ("promoted_for", "record", "skipped"),
    [
        (None, NOTHING_SCORED, None),  # a first run
        (date(2026, 11, 28), ScoringRecord(None, date(2026, 11, 28)), None),  # the next night's run
        (SCORE_DATE, NOTHING_SCORED, None),  # a rerun after score failed: promoted, never scored
        (SCORE_DATE, ScoringRecord("4", SCORE_DATE), "scored before by version 4"),  # a rerun
        (date(2026, 11, 30), NOTHING_SCORED, "before 2026-11-30"),  # a backfill after a promotion
        (None, ScoringRecord(None, date(2026, 12, 1)), "before 2026-12-01"),  # a backfill of a date never scored
    ],
)
def test_a_run_that_cannot_promote_skips_training_evaluation_and_packaging(
    tmp_path, promoted_for, record, skipped
):
    run = run_context(tmp_path)
    skip = phases_to_skip(run, promoted_for, record)
    if skipped is None:
        assert skip is None
    else:
        assert skip.run == run and skip.phases == ["train", "evaluate", "package"]
        assert skip.reason == (
            f"this run cannot promote ({why_held_back(SCORE_DATE, promoted_for, record)}); "
            "score uses the date's model of record"
        )
        assert skipped in skip.reason


def test_a_retraining_run_that_drift_started_may_promote_for_its_scored_date(tmp_path):
    scored = ScoringRecord("4", SCORE_DATE)
    assert why_held_back(SCORE_DATE, SCORE_DATE, scored, drift_triggered=True) is None
    retraining = run_context(tmp_path).model_copy(update={"drift_triggered": True})
    assert phases_to_skip(retraining, SCORE_DATE, scored) is None
    # Drift does not make history: a date before one scored since stays a backfill.
    later = ScoringRecord("4", date(2026, 11, 30))
    assert "before 2026-11-30" in why_held_back(SCORE_DATE, None, later, drift_triggered=True)
    assert phases_to_skip(retraining, None, later) is not None


def test_a_held_back_run_never_promotes_however_good():
    decision = decide_promotion(0.99, 0.70, min_auc=0.70, held_back="a backfill")
    assert (decision.promote, decision.reason) == (False, "a backfill")


def test_a_champion_that_cannot_score_the_rows_leaves_the_floor_to_decide():
    incomparable = "champion version 3 was trained under another data contract and cannot score these rows"
    decision = decide_promotion(0.75, None, min_auc=0.70, champion_incomparable=incomparable)
    assert decision.promote is True and "another data contract" in decision.reason
    assert decide_promotion(0.65, None, min_auc=0.70, champion_incomparable=incomparable).promote is False


GATES = QualityGates(min_test_roc_auc=0.7, operating_threshold=0.5)


def test_evaluation_logs_metrics_and_plots_to_the_training_run(trained_run, contract):
    trained = trained_run.trained
    use_mlflow(trained_run.settings)
    result = evaluate_challenger(trained, contract, quality_gates=GATES, champion=None, held_back=None, seed=1)
    assert isinstance(result, EvaluateResult)
    assert result.run == trained.run
    assert result.promote is True and "no champion yet" in result.reason
    assert (result.champion_version, result.champion_test_roc_auc) == (None, None)
    tracked = mlflow.get_run(trained.mlflow_run_id)
    for metric in (
        "test_roc_auc",
        "test_pr_auc",
        "test_brier",
        "test_log_loss",
        "test_top_decile_lift",
        "test_precision_at_threshold",
        "test_recall_at_threshold",
    ):
        assert tracked.data.metrics[metric] == pytest.approx(result.metrics[metric])
    plots = {artifact.path for artifact in mlflow.MlflowClient().list_artifacts(tracked.info.run_id, "plots")}
    assert plots == {
        f"plots/{name}.png"
        for name in ("roc_curve", "precision_recall_curve", "calibration_curve", "feature_importance")
    }
    assert tracked.data.tags["promotion_decision"] == "promote"
    assert tracked.data.tags["promotion_reason"] == result.reason
    # The card an approver reads before packaging: what the challenger is, how it measured.
    card = mlflow.artifacts.load_text(f"runs:/{tracked.info.run_id}/challenger_card.md")
    assert f"| model family | {trained.model_family} |" in card
    assert f"| tested on | {trained.test_rows} held-out rows |" in card
    assert "This is the first model: there is no champion to compare it with." in card
    assert f"| ROC AUC | {result.metrics['test_roc_auc']:.4f} |" in card
    assert f"promote: {result.reason}." in card and "| family | CV ROC AUC (mean ± std)" in card


def test_a_promotion_far_from_the_champion_carries_its_approval_request_with_mlflow_links(
    trained_run, monkeypatch
):
    trained = trained_run.trained
    use_mlflow(trained_run.settings)
    monkeypatch.setenv("CHURN_MLFLOW_UI_URL", "http://mlflow.example")
    evaluated = EvaluateResult(
        run=trained.run,
        metrics={"test_roc_auc": 0.90},
        champion_version="3",
        champion_test_roc_auc=0.80,
        promote=True,
        reason="challenger 0.9000 >= champion 0.8000 on the same test rows",
    )
    asked = with_approval_request(evaluated, trained, trained_run.settings, drift_triggered=False, drift_events=[])
    experiment = mlflow.get_run(trained.mlflow_run_id).info.experiment_id
    assert asked.approval.accountable_roles == ["data_scientist"] and asked.approval.respondents == ["admin"]
    assert (
        f"(http://mlflow.example/#/experiments/{experiment}/runs/{trained.mlflow_run_id}?" in asked.approval.body
    )
    assert "(http://mlflow.example/#/models/churn-classifier/versions/3?" in asked.approval.body
    close = evaluated.model_copy(update={"champion_test_roc_auc": 0.89})
    assert (
        with_approval_request(
            close, trained, trained_run.settings, drift_triggered=False, drift_events=[]
        ).approval
        is None
    )
    drifted = with_approval_request(close, trained, trained_run.settings, drift_triggered=True, drift_events=[])
    assert drifted.approval.accountable_roles == ["mlops_engineer"]


def test_a_held_back_evaluation_keeps_the_champion_and_says_why(trained_run, contract):
    trained = trained_run.trained
    use_mlflow(trained_run.settings)
    held_back = "2026-11-29 was scored before by version 4: reruns and backfills never move the champion"
    result = evaluate_challenger(
        trained, contract, quality_gates=GATES, champion=None, held_back=held_back, seed=1
    )
    assert (result.promote, result.reason) == (False, held_back)
    assert result.metrics["test_roc_auc"] > GATES.min_test_roc_auc  # good enough, held back all the same
    tags = mlflow.get_run(trained.mlflow_run_id).data.tags
    assert (tags["promotion_decision"], tags["promotion_reason"]) == ("keep_champion", held_back)


def test_a_champion_under_another_contract_that_cannot_score_is_incomparable(trained_run, contract):
    import uuid

    from mlflow import MlflowClient

    from churn.evaluate import champion_metrics_on

    trained = trained_run.trained
    use_mlflow(trained_run.settings)
    client = MlflowClient()
    model_name = f"churn-contract-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(model_name)
    test = read_parquet(trained.test_path)
    # Rows shaped by a contract without PaymentMethod: the registered model needs that column.
    inputs, labels = model_inputs(test, contract).drop(columns=["PaymentMethod"]), label_vector(test, contract)

    other = mlflow.register_model(trained.model_uri, model_name, tags={"contract_sha256": "another"})
    other_version = client.get_model_version(model_name, other.version)
    assert champion_metrics_on(other_version, inputs, labels, contract, 0.5) is None

    same = mlflow.register_model(trained.model_uri, model_name, tags={"contract_sha256": contract.fingerprint})
    with pytest.raises(ValueError, match="PaymentMethod"):
        champion_metrics_on(client.get_model_version(model_name, same.version), inputs, labels, contract, 0.5)
    whole = champion_metrics_on(
        client.get_model_version(model_name, same.version), model_inputs(test, contract), labels, contract, 0.5
    )
    assert 0.7 < whole["test_roc_auc"] <= 1.0
