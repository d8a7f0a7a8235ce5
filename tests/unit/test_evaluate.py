from datetime import date

import mlflow
import numpy as np
import pytest

from churn.evaluate import classification_metrics, decide_promotion, evaluate_challenger, top_decile_lift
from churn.tracking import use_mlflow


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
    decision = decide_promotion(challenger, champion, min_auc=0.70, score_date=date(2026, 11, 29))
    assert decision.promote is promote
    assert reason in decision.reason


@pytest.mark.parametrize(
    ("score_date", "promote"),
    [(date(2026, 11, 20), False), (date(2026, 11, 28), True), (date(2026, 11, 29), True)],
)
def test_a_run_for_a_date_before_the_champions_never_promotes(score_date, promote):
    decision = decide_promotion(
        0.95, 0.80, min_auc=0.70, score_date=score_date, champion_promoted_for=date(2026, 11, 28)
    )
    assert decision.promote is promote
    if not promote:
        assert "backfills" in decision.reason and "2026-11-28" in decision.reason


def test_a_champion_under_another_contract_is_not_compared_but_the_floor_still_holds():
    kwargs = {"min_auc": 0.70, "score_date": date(2026, 11, 29), "champion_contract_differs": True}
    decision = decide_promotion(0.75, None, **kwargs)
    assert decision.promote is True and "another data contract" in decision.reason
    assert decide_promotion(0.65, None, **kwargs).promote is False


def test_evaluation_logs_metrics_and_plots_to_the_training_run(trained_run, contract):
    run, settings = trained_run
    use_mlflow(settings)
    result = evaluate_challenger(
        run["train"]["test_path"],
        contract,
        run["train"]["mlflow_run_id"],
        run["train"]["model_uri"],
        quality_gates={"min_test_roc_auc": 0.7, "operating_threshold": 0.5},
        champion=None,
        score_date=date(2026, 11, 29),
        seed=1,
    )
    assert result["promote"] is True
    tracked = mlflow.get_run(run["train"]["mlflow_run_id"])
    for metric in (
        "test_roc_auc",
        "test_pr_auc",
        "test_brier",
        "test_log_loss",
        "test_top_decile_lift",
        "test_precision_at_threshold",
        "test_recall_at_threshold",
    ):
        assert tracked.data.metrics[metric] == pytest.approx(result["metrics"][metric])
    plots = {artifact.path for artifact in mlflow.MlflowClient().list_artifacts(tracked.info.run_id, "plots")}
    assert plots == {
        f"plots/{name}.png"
        for name in ("roc_curve", "precision_recall_curve", "calibration_curve", "feature_importance")
    }
    assert tracked.data.tags["promotion_decision"] == "promote"
