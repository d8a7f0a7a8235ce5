"""Model Packaging: register the challenger with its model card; move the alias on promotion.

Registration is idempotent: a challenger whose training fingerprint matches a version
already in the registry reuses that version, so a rerun of a date does not mint a copy.
"""

from __future__ import annotations

from typing import Any

from churn.handoffs import EvaluateResult, PackageResult, TrainResult, ValidateResult, accepts_handoffs
from churn.manifest import run_phase
from churn.settings import Settings, code_version
from churn.tracking import CONTRACT_TAG, PROMOTED_FOR_TAG, aliased_version, use_mlflow

FINGERPRINT_TAG = "training_fingerprint"


class ChampionChangedError(RuntimeError):
    """Another run moved the champion between this run's evaluation and its packaging."""


def render_model_card(facts: dict[str, Any]) -> str:
    """A Markdown model card from the run's facts; holds no connection strings or secrets."""
    metrics = facts["metrics"]
    metric_rows = "\n".join(f"| {name} | {value:.4f} |" for name, value in sorted(metrics.items()))
    split = f"{facts['train_rows_available']} train / {facts['test_rows']} test"
    sampled = (
        f" (a stratified sample of the {facts['train_rows_available']} in the train split)"
        if facts["train_rows"] < facts["train_rows_available"]
        else ""
    )
    return f"""# Model card: {facts["model_name"]}

Churn classifier: the probability that an active customer churns, for batch scoring.

## Provenance
| fact | value |
|---|---|
| model family | {facts["model_family"]} (calibrated: {facts["calibration"]}) |
| score date | {facts["score_date"]} |
| training snapshot | {facts["training_rows"]} rows ({split}) |
| trained on | {facts["train_rows"]} rows{sampled} |
| scoring snapshot | {facts["scoring_rows"]} rows |
| data contract | {facts["contract"]} (sha256 {facts["contract_sha256"]}) |
| training fingerprint | {facts["training_fingerprint"]} |
| code version | {facts["code_version"]} |
| MLflow run | {facts["mlflow_run_id"]} |
| Airflow run | {facts["airflow_run_id"]} |

## Held-out test metrics
| metric | value |
|---|---|
| cross-validated ROC AUC (train split) | {facts["cv_roc_auc"]:.4f} |
{metric_rows}

## Promotion
{facts["promotion_reason"]}

## Intended use and limits
Ranks active customers by churn risk for retention outreach. Trained on one snapshot of
labelled customers; scores are only as current as that snapshot and assume the scoring
population resembles it.
"""


def find_version_by_fingerprint(client: Any, model_name: str, fingerprint: str) -> Any | None:
    """The registered version trained from exactly these inputs, if there is one."""
    matches = client.search_model_versions(f"name = '{model_name}' and tags.{FINGERPRINT_TAG} = '{fingerprint}'")
    return min(matches, key=lambda version: int(version.version)) if matches else None


def register_challenger(
    model_uri: str,
    mlflow_run_id: str,
    *,
    model_name: str,
    champion_alias: str,
    fingerprint: str,
    contract_sha256: str,
    score_date: str,
    promote: bool,
    model_card: str,
    compared_champion: str | None = None,
) -> dict[str, Any]:
    """Register (or reuse) the challenger's version; point the champion alias at it on promotion.

    The version is tagged with its data contract, and on promotion with the score date it
    was promoted for, so later evaluations know what they compare with.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        client.get_registered_model(model_name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(model_name, description="Calibrated customer-churn classifier.")
    version = find_version_by_fingerprint(client, model_name, fingerprint)
    reused = version is not None
    if version is None:
        version = mlflow.register_model(model_uri, model_name, tags={FINGERPRINT_TAG: fingerprint})
        client.update_model_version(model_name, version.version, description=model_card)
    client.set_model_version_tag(model_name, version.version, "source_mlflow_run_id", mlflow_run_id)
    client.set_model_version_tag(model_name, version.version, CONTRACT_TAG, contract_sha256)
    client.log_text(mlflow_run_id, model_card, "model_card.md")
    if promote:
        current = aliased_version(model_name, champion_alias)
        current_version = str(current.version) if current is not None else None
        if current_version != compared_champion:
            raise ChampionChangedError(
                f"the {champion_alias!r} alias of {model_name!r} moved from version {compared_champion} to "
                f"{current_version} after this run's evaluation; not promoting a challenger compared with an "
                "outdated champion. Rerun the date to compare with the new one."
            )
        client.set_model_version_tag(model_name, version.version, PROMOTED_FOR_TAG, score_date)
        client.set_registered_model_alias(model_name, champion_alias, version.version)
    champion = aliased_version(model_name, champion_alias)
    return {
        "model_name": model_name,
        "model_version": str(version.version),
        "reused_existing_version": reused,
        "promoted": promote,
        "champion_version": str(champion.version) if champion is not None else None,
    }


def model_card(
    validated: ValidateResult, trained: TrainResult, evaluated: EvaluateResult, settings: Settings
) -> str:
    """The model card of the run's challenger, from what the earlier phases recorded."""
    return render_model_card(
        {
            **trained.model_dump(mode="json", exclude={"run"}),
            "model_name": settings.config.registered_model,
            "calibration": settings.config.training.calibration,
            "score_date": trained.run.score_date.isoformat(),
            "training_rows": validated.training.rows,
            "scoring_rows": validated.scoring.rows,
            "contract": validated.contract_name,
            "contract_sha256": validated.contract_sha256,
            "code_version": code_version(),
            "airflow_run_id": trained.run.airflow_run_id,
            "metrics": evaluated.metrics,
            "promotion_reason": evaluated.reason,
        }
    )


@accepts_handoffs
def run_package(
    validated: ValidateResult, trained: TrainResult, evaluated: EvaluateResult, settings: Settings | None = None
) -> PackageResult:
    """Register the run's challenger with its model card; promote it if evaluation said so."""

    def package() -> PackageResult:
        from churn.airflow_connections import task_settings

        configured = settings or task_settings(mlflow=True)
        use_mlflow(configured)
        registered = register_challenger(
            trained.model_uri,
            trained.mlflow_run_id,
            model_name=configured.config.registered_model,
            champion_alias=configured.config.champion_alias,
            fingerprint=trained.training_fingerprint,
            contract_sha256=validated.contract_sha256,
            score_date=trained.run.score_date.isoformat(),
            promote=evaluated.promote,
            compared_champion=evaluated.champion_version,
            model_card=model_card(validated, trained, evaluated, configured),
        )
        return PackageResult(run=trained.run, **registered)

    return run_phase("package", trained.run, package)
