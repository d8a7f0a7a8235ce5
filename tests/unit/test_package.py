import uuid

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from churn.package import ChampionChangedError, register_challenger, render_model_card
from churn.tracking import aliased_version, use_mlflow

FACTS = {
    "model_name": "churn-classifier",
    "model_family": "logistic_regression",
    "calibration": "sigmoid",
    "score_date": "2026-11-29",
    "training_rows": 3000,
    "train_rows": 2400,
    "test_rows": 600,
    "scoring_rows": 600,
    "contract": "telco_customer_churn",
    "contract_sha256": "abc123",
    "training_fingerprint": "f00d",
    "code_version": "0.1.0+gdeadbeef",
    "mlflow_run_id": "r1",
    "airflow_run_id": "manual__x",
    "cv_roc_auc": 0.83,
    "metrics": {"test_roc_auc": 0.82, "test_brier": 0.14},
    "promotion_reason": "no champion yet",
}


def test_model_card_states_provenance_and_metrics():
    card = render_model_card(FACTS)
    for fact in ("3000 rows", "abc123", "0.1.0+gdeadbeef", "| test_roc_auc | 0.8200 |", "no champion yet"):
        assert fact in card


def test_model_card_holds_no_connection_strings(trained_run):
    _, settings = trained_run
    card = render_model_card(FACTS)
    assert settings.mlflow_tracking_uri not in card and settings.warehouse_url not in card
    assert "password" not in card.lower()


def _register(run, model_name, *, fingerprint, promote, compared=None):
    return register_challenger(
        run["train"]["model_uri"],
        run["train"]["mlflow_run_id"],
        model_name=model_name,
        champion_alias="champion",
        fingerprint=fingerprint,
        contract_sha256="contract-sha",
        score_date="2026-11-29",
        promote=promote,
        model_card="card",
        compared_champion=compared,
    )


def test_registration_is_idempotent_and_the_alias_moves_only_on_promotion(trained_run):
    run, settings = trained_run
    use_mlflow(settings)
    # A model of its own: other tests promote the shared run's model under the real name.
    model_name = f"churn-classifier-{uuid.uuid4().hex[:8]}"
    first = _register(run, model_name, fingerprint="fp-1", promote=False)
    assert first["champion_version"] is None
    assert aliased_version(model_name, "champion") is None

    again = _register(run, model_name, fingerprint="fp-1", promote=True)
    assert again["model_version"] == first["model_version"]
    assert again["reused_existing_version"] is True
    assert str(aliased_version(model_name, "champion").version) == first["model_version"]

    with pytest.raises(ChampionChangedError, match="moved from version None"):
        _register(run, model_name, fingerprint="fp-3", promote=True, compared=None)
    assert str(aliased_version(model_name, "champion").version) == first["model_version"]

    rejected = _register(run, model_name, fingerprint="fp-2", promote=False)
    assert rejected["model_version"] != first["model_version"]
    assert str(aliased_version(model_name, "champion").version) == first["model_version"]

    client = MlflowClient()
    version = client.get_model_version(model_name, first["model_version"])
    assert version.description == "card"
    assert version.tags["training_fingerprint"] == "fp-1"
    assert version.tags["contract_sha256"] == "contract-sha"
    assert version.tags["promoted_for_score_date"] == "2026-11-29"
    assert "promoted_for_score_date" not in client.get_model_version(model_name, rejected["model_version"]).tags
    with pytest.raises(MlflowException):
        client.get_model_version(model_name, "999")
