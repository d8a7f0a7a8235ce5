import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from churn import package
from churn.contract import load_contract
from churn.handoffs import ApprovalOutcome, ApprovalRequest, EvaluateResult, PackageResult
from churn.manifest import read_manifests
from churn.package import (
    inputs_section,
    model_card,
    register_challenger,
    render_model_card,
    run_package,
)
from churn.tracking import ChampionChangedError, aliased_version, move_champion, use_mlflow
from churn.train import plan_refit

SELECTION = {
    "families": [
        {
            "family": "logistic_regression",
            "params": {"C": 0.42, "class_weight": None},
            "cv_roc_auc": 0.8312,
            "cv_roc_auc_std": 0.0121,
            "configured_cv_roc_auc": 0.8298,
            "configured_cv_roc_auc_std": 0.0133,
            "search": "searched",
            "configurations_tried": 27,
            "seconds": 6.31,
        },
        {
            "family": "random_forest",
            "params": {"n_estimators": 150, "max_depth": 12},
            "cv_roc_auc": 0.8207,
            "cv_roc_auc_std": 0.0144,
            "configured_cv_roc_auc": 0.8207,
            "configured_cv_roc_auc_std": 0.0144,
            "search": "budget_spent",
            "configurations_tried": 0,
            "seconds": 3.02,
        },
    ],
    "search_spaces": {
        "logistic_regression": {"C": {"low": 0.01, "high": 100.0, "log": True}},
        "random_forest": {"max_depth": [8, 12, 16]},
    },
    "time_budget_seconds": 30.0,
    "seconds": 29.4,
    "cv_rows": 2400,
    "cv_folds": 5,
}
FACTS = {
    "model_name": "churn-classifier",
    "model_family": "logistic_regression",
    "model_params": {"C": 0.42, "class_weight": None},
    "selection": SELECTION,
    "calibration": "sigmoid",
    "score_date": "2026-11-29",
    "training_rows": 3000,
    "train_rows": 2400,
    "train_rows_available": 2400,
    "test_rows": 600,
    "scoring_rows": 600,
    "contract": "telco_customer_churn",
    "contract_sha256": "abc123",
    "inputs": "- predicts: `Churn` churned",
    "training_fingerprint": "f00d",
    "refit_rows": 3000,
    "refit_rows_available": 3000,
    "refit_fingerprint": "beef",
    "code_version": "0.1.0+gdeadbeef",
    "mlflow_run_id": "r1",
    "airflow_run_id": "manual__x",
    "cv_roc_auc": 0.83,
    "metrics": {"test_roc_auc": 0.82, "test_brier": 0.14},
    "promotion_reason": "no champion yet",
}


def test_the_model_card_names_what_the_model_reads_and_what_it_never_sees():
    card = render_model_card({**FACTS, "inputs": inputs_section(load_contract("bank_customer_churn"))})
    assert "- predicts: `Exited` churned (positive [1], negative [0])" in card
    assert "- customer id: `CustomerId`" in card
    categorical = next(line for line in card.splitlines() if line.startswith("- categorical features"))
    assert "`NumOfProducts`" in categorical and "`Surname`" not in card.split("- not modelled")[0]
    assert "- not modelled: `Complain`, a known leak (role: leak): recorded after the outcome" in card
    assert "- not modelled: `RowNumber`, ignored by the contract" in card


WAREHOUSE_PASSWORD = "wareh0use-s3cret"
URL_PASSWORD = "mlfl0w-url-s3cret"
MLFLOW_PASSWORD = "mlfl0w-login-s3cret"


def test_model_card_states_provenance_and_metrics():
    card = render_model_card(FACTS)
    for fact in ("3000 rows", "abc123", "0.1.0+gdeadbeef", "| test_roc_auc | 0.8200 |", "no champion yet"):
        assert fact in card


def test_model_card_records_every_candidate_the_search_spaces_the_time_and_the_budget():
    card = render_model_card(FACTS)
    for fact in (
        "| **logistic_regression** (chosen) | 0.8312 ± 0.0121 | 0.8298 ± 0.0133 | C=0.42, class_weight=None "
        "| searched | 27 | 6.3 |",
        "| random_forest | 0.8207 ± 0.0144 | 0.8207 ± 0.0144 | n_estimators=150, max_depth=12 "
        "| none: budget spent, configured values kept | 0 | 3.0 |",
        "| logistic_regression | C | 0.01 to 100 (log-uniform) |",
        "| random_forest | max_depth | 8, 12, 16 |",
        "Model selection took 29.4 s of a 30 s budget.",
        "5-fold cross-validated ROC AUC on the same folds of the\n2400 training-split rows",
        "the test split played no part",
        "| hyperparameters | C=0.42, class_weight=None |",
    ):
        assert fact in card, fact


def test_model_card_says_the_registered_model_is_a_refit_on_every_labelled_row():
    card = render_model_card(FACTS)
    assert "| registered model trained on | 3000 rows, both splits: refit after evaluation |" in card
    assert "| training fingerprint | beef |" in card
    assert "refit on all 3000 labelled rows" in card
    assert "The metrics above are those of the fit on the training split" in card
    sampled = render_model_card({**FACTS, "refit_rows": 2000, "refit_rows_available": 3000})
    assert "| 2000 rows, both splits, a stratified sample of the 3000 labelled rows: refit after" in sampled


def test_model_card_without_a_search_says_the_families_kept_their_configured_values():
    families = [{**family, "search": "no_space", "configurations_tried": 0} for family in SELECTION["families"]]
    without = {**SELECTION, "families": families, "search_spaces": {}, "time_budget_seconds": None}
    card = render_model_card({**FACTS, "selection": without})
    assert "competed with its configured hyperparameters (no search was configured)" in card
    assert "budget" not in card
    assert "| (none) | | |" in card


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
    contract = load_contract(trained.run.contract)
    refit = plan_refit(trained, contract, settings.config.training)
    card = model_card(validated, trained, _evaluated(trained), settings, refit, contract)
    for secret in (warehouse_url, tracking_uri, WAREHOUSE_PASSWORD, URL_PASSWORD, MLFLOW_PASSWORD):
        assert secret not in card
    assert "db.internal" not in card and "mlflow.internal" not in card
    assert "password" not in card.lower()
    for fact in (
        f"# Model card: {settings.config.registered_model}",
        f"{validated.training.rows} rows ({trained.train_rows_available} train / {trained.test_rows} test)",
        f"{validated.scoring.rows} rows",
        f"{validated.contract_name} (sha256 {validated.contract_sha256})",
        refit.fingerprint,
        f"| registered model trained on | {len(refit.rows)} rows, both splits: refit after evaluation |",
        trained.mlflow_run_id,
        trained.run.airflow_run_id,
        f"{trained.model_family} (calibrated: {settings.config.training.calibration})",
        f"| cross-validated ROC AUC (train split) | {trained.cv_roc_auc:.4f} |",
        *(f"| {family} |" for family in trained.selection.search_spaces),
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
        promote=promote,
        model_card="card",
        compared_champion=compared,
    )


def test_registration_is_idempotent_and_never_moves_the_alias_which_moves_once_promoted(trained_run):
    trained = trained_run.trained
    use_mlflow(trained_run.settings)
    # A model of its own: other tests promote the shared run's model under the real name.
    model_name = f"churn-classifier-{uuid.uuid4().hex[:8]}"
    first = _register(trained, model_name, fingerprint="fp-1", promote=False)
    assert first["champion_version"] is None
    assert aliased_version(model_name, "champion") is None

    again = _register(trained, model_name, fingerprint="fp-1", promote=True)
    assert again["model_version"] == first["model_version"]
    assert again["reused_existing_version"] is True and again["promoted"] is True
    # Registering a promotion does not move the alias: score's publish step does, once.
    assert aliased_version(model_name, "champion") is None
    for _ in range(2):  # a retry of publish finds the alias moved already
        move_champion(model_name, "champion", first["model_version"], score_date=date(2026, 11, 29), compared=None)
    assert str(aliased_version(model_name, "champion").version) == first["model_version"]

    with pytest.raises(ChampionChangedError, match="moved from version None"):
        _register(trained, model_name, fingerprint="fp-3", promote=True, compared=None)
    with pytest.raises(ChampionChangedError, match="moved from version None"):
        move_champion(model_name, "champion", "999", score_date=date(2026, 11, 30), compared=None)
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


def test_run_package_registers_the_refit_with_its_card_and_promotes_it(trained_run, tmp_path: Path, monkeypatch):
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
    # The alias moves once score publishes the date (see tests/faults/test_model_identity.py).
    assert packaged.champion_version is None and aliased_version(model_name, "champion") is None
    assert read_manifests(tmp_path)["package"] == packaged
    client = MlflowClient()
    version = client.get_model_version(model_name, packaged.model_version)
    contract = load_contract(run.contract)
    refit = plan_refit(trained, contract, settings.config.training)
    assert version.description == model_card(validated, trained, evaluated, settings, refit, contract)
    assert version.tags["contract_sha256"] == validated.contract_sha256
    assert version.tags["training_fingerprint"] == refit.fingerprint != trained.training_fingerprint
    # The registered model is the refit, logged beside the evaluated model in the training's run.
    assert version.run_id == trained.mlflow_run_id
    assert version.source != trained.model_uri
    tracked = mlflow.get_run(trained.mlflow_run_id).data
    assert tracked.params["refit_rows"] == tracked.params["refit_rows_available"] == "3000"
    registered = mlflow.sklearn.load_model(f"models:/{model_name}/{packaged.model_version}")
    assert len(registered.calibrated_classifiers_) == 1
    # The same family with the same hyperparameters as the model evaluation scored.
    estimator = registered.calibrated_classifiers_[0].estimator.named_steps["model"]
    evaluated_model = mlflow.sklearn.load_model(trained.model_uri).calibrated_classifiers_[0].estimator
    assert type(estimator) is type(evaluated_model.named_steps["model"])
    chosen = trained.selection.family(trained.model_family).params
    assert {key: estimator.get_params()[key] for key in chosen} == chosen

    # A rerun with the same inputs reuses the version without fitting again.
    def no_refit(*args, **kwargs):
        raise AssertionError("a version made from the same inputs is registered: no refit is needed")

    monkeypatch.setattr(package, "refit_chosen", no_refit)
    again = run_package(validated, trained, _evaluated(trained, promote=False, reason="a rerun"), settings)
    assert (again.model_version, again.reused_existing_version, again.promoted) == (
        packaged.model_version,
        True,
        False,
    )
    assert again.champion_version is None


def test_a_promotion_waiting_for_approval_is_recorded_only_once_approved(trained_run, tmp_path: Path):
    run = trained_run.trained.run.model_copy(update={"run_dir": tmp_path})
    validated = trained_run.validated.model_copy(update={"run": run})
    trained = trained_run.trained.model_copy(update={"run": run})
    model_name = f"churn-classifier-{uuid.uuid4().hex[:8]}"
    settings = trained_run.settings.overridden(
        config=trained_run.settings.config.model_copy(update={"registered_model": model_name})
    )
    request = ApprovalRequest(
        reasons=["test ROC AUC changes by +0.0500 from the champion's"],
        accountable_roles=["data_scientist"],
        respondents=["admin"],
        subject="Promote?",
        body="...",
    )
    asked = _evaluated(trained).model_copy(update={"approval": request})
    at = datetime(2026, 11, 30, 4, 10, tzinfo=UTC)

    rejected = run_package(
        validated,
        trained,
        asked,
        settings,
        approval={"decision": "rejected", "responded_by": "admin", "responded_at": at},
    )
    assert rejected.promoted is False and rejected.champion_version is None
    assert aliased_version(model_name, "champion") is None
    assert read_manifests(tmp_path)["package"].approval.decision == "rejected"
    card = MlflowClient().get_model_version(model_name, rejected.model_version).description
    assert "waited for approval by data_scientist (test ROC AUC changes by +0.0500" in card
    assert "rejected by admin at 2026-11-30 04:10 UTC; the champion stays." in card
    assert "promotion rejected by admin" in rejected.summary()

    approved = run_package(
        validated, trained, asked, settings, approval=ApprovalOutcome(decision="approved", responded_by="admin")
    )
    assert approved.promoted is True and approved.model_version == rejected.model_version
    assert read_manifests(tmp_path)["package"].approval.responded_by == "admin"


def test_the_model_card_says_when_the_model_was_chosen_on_a_sample():
    sampled = render_model_card({**FACTS, "train_rows": 1000, "train_rows_available": 2400})
    assert "| chosen on | 1000 rows (a stratified sample of the 2400 in the train split) |" in sampled
    whole = render_model_card(FACTS)
    assert "| chosen on | 2400 rows |" in whole
