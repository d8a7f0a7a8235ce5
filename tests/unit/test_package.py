import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from churn.handoffs import EvaluateResult, PackageResult
from churn.manifest import read_manifests
from churn.package import ChampionChangedError, model_card, register_challenger, render_model_card, run_package
from churn.tracking import aliased_version, use_mlflow

FACTS = {
    "model_name": "churn-classifier",
    "model_family": "logistic_regression",
    "calibration": "sigmoid",
    "score_date": "2026-11-29",
    "training_rows": 3000,
    "train_rows": 2400,
    "train_rows_available": 2400,
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
WAREHOUSE_PASSWORD = "wareh0use-s3cret"
URL_PASSWORD = "mlfl0w-url-s3cret"
MLFLOW_PASSWORD = "mlfl0w-login-s3cret"


def test_model_card_states_provenance_and_metrics():
    card = render_model_card(FACTS)
    for fact in ("3000 rows", "abc123", "0.1.0+gdeadbeef", "| test_roc_auc | 0.8200 |", "no champion yet"):
        assert fact in card


def _evaluated(trained, *, promote=True, champion_version=None, reason="no champion yet; challenger clears"):
    return EvaluateResult(
        run=trained.run,
        metrics={"test_roc_auc": 0.8123, "test_brier": 0.1357, "test_top_decile_lift": 2.4681},
        champion_version=champion_version,
        champion_test_roc_auc=None,
        promote=promote,
        reason=reason,
    )


def test_the_model_card_holds_the_runs_facts_and_no_connection_strings(trained_run):
    validated, trained = trained_run.validated, trained_run.trained
    warehouse_url = f"postgresql+psycopg://churn:{WAREHOUSE_PASSWORD}@db.internal:5432/warehouse"
    tracking_uri = f"https://bob:{URL_PASSWORD}@mlflow.internal:5000"
    settings = trained_run.settings.overridden(
        warehouse_url=warehouse_url,
        mlflow_tracking_uri=tracking_uri,
        mlflow_username="bob",
        mlflow_password=MLFLOW_PASSWORD,
    )
    card = model_card(validated, trained, _evaluated(trained), settings)
    for secret in (warehouse_url, tracking_uri, WAREHOUSE_PASSWORD, URL_PASSWORD, MLFLOW_PASSWORD):
        assert secret not in card
    assert "db.internal" not in card and "mlflow.internal" not in card
    assert "password" not in card.lower()
    for fact in (
        f"# Model card: {settings.config.registered_model}",
        f"{validated.training.rows} rows ({trained.train_rows_available} train / {trained.test_rows} test)",
        f"{validated.scoring.rows} rows",
        f"{validated.contract_name} (sha256 {validated.contract_sha256})",
        trained.training_fingerprint,
        trained.mlflow_run_id,
        trained.run.airflow_run_id,
        f"{trained.model_family} (calibrated: {settings.config.training.calibration})",
        f"| cross-validated ROC AUC (train split) | {trained.cv_roc_auc:.4f} |",
        "| test_roc_auc | 0.8123 |",
        "| test_brier | 0.1357 |",
        "| test_top_decile_lift | 2.4681 |",
        "no champion yet; challenger clears",
        "2026-11-29",
    ):
        assert fact in card, fact
    assert validated.training.rows == 3000 and len(validated.contract_sha256) == 64


def _register(trained, model_name, *, fingerprint, promote, compared=None):
    return register_challenger(
        trained.model_uri,
        trained.mlflow_run_id,
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
    trained = trained_run.trained
    use_mlflow(trained_run.settings)
    # A model of its own: other tests promote the shared run's model under the real name.
    model_name = f"churn-classifier-{uuid.uuid4().hex[:8]}"
    first = _register(trained, model_name, fingerprint="fp-1", promote=False)
    assert first["champion_version"] is None
    assert aliased_version(model_name, "champion") is None

    again = _register(trained, model_name, fingerprint="fp-1", promote=True)
    assert again["model_version"] == first["model_version"]
    assert again["reused_existing_version"] is True
    assert str(aliased_version(model_name, "champion").version) == first["model_version"]

    with pytest.raises(ChampionChangedError, match="moved from version None"):
        _register(trained, model_name, fingerprint="fp-3", promote=True, compared=None)
    assert str(aliased_version(model_name, "champion").version) == first["model_version"]

    rejected = _register(trained, model_name, fingerprint="fp-2", promote=False)
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


def test_run_package_registers_the_challenger_with_its_card_and_promotes_it(trained_run, tmp_path: Path):
    # The run's records, but a run folder and a registered model of this test's own.
    run = trained_run.trained.run.model_copy(update={"run_dir": tmp_path})
    validated = trained_run.validated.model_copy(update={"run": run})
    trained = trained_run.trained.model_copy(update={"run": run})
    model_name = f"churn-classifier-{uuid.uuid4().hex[:8]}"
    settings = trained_run.settings.overridden(
        config=trained_run.settings.config.model_copy(update={"registered_model": model_name})
    )
    evaluated = _evaluated(trained)
    packaged = run_package(
        validated.model_dump(mode="json"),
        trained.model_dump(mode="json"),
        evaluated.model_dump(mode="json"),
        settings,
    )
    assert isinstance(packaged, PackageResult)
    assert packaged.model_name == model_name and packaged.promoted is True
    assert packaged.reused_existing_version is False
    assert packaged.champion_version == packaged.model_version
    assert read_manifests(tmp_path)["package"] == packaged
    version = MlflowClient().get_model_version(model_name, packaged.model_version)
    assert version.description == model_card(validated, trained, evaluated, settings)
    assert version.tags["contract_sha256"] == validated.contract_sha256
    assert version.tags["training_fingerprint"] == trained.training_fingerprint

    again = run_package(validated, trained, _evaluated(trained, promote=False, reason="a rerun"), settings)
    assert (again.model_version, again.reused_existing_version, again.promoted) == (
        packaged.model_version,
        True,
        False,
    )
    assert again.champion_version == packaged.model_version


def test_the_model_card_says_when_the_model_learned_from_a_sample():
    sampled = render_model_card({**FACTS, "train_rows": 1000, "train_rows_available": 2400})
    assert "| trained on | 1000 rows (a stratified sample of the 2400 in the train split) |" in sampled
    whole = render_model_card(FACTS)
    assert "| trained on | 2400 rows |" in whole
