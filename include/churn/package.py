"""Model Packaging: refit the chosen model on every labelled row, register it with its model
card; move the alias on promotion.

Evaluation decided on the held-out rows with the chosen configuration fitted on the
training split; the registered model is that configuration refit on all labelled rows,
so it learns from the test rows too. Registration is idempotent: a refit whose
fingerprint (rows, contract, chosen configuration, code) matches a version already in the
registry reuses that version without fitting again, so a rerun of a date does not mint a copy.
"""

from __future__ import annotations

from typing import Any

from churn.approval import promotes
from churn.contract import Contract, load_contract
from churn.handoffs import (
    ApprovalOutcome,
    EvaluateResult,
    PackageResult,
    TrainResult,
    ValidateResult,
    accepts_handoffs,
)
from churn.manifest import run_phase
from churn.model import model_columns
from churn.settings import Settings, code_version
from churn.tracking import (
    CONTRACT_TAG,
    FINGERPRINT_TAG,
    aliased_version,
    check_champion_unchanged,
    use_mlflow,
)
from churn.train import Refit, log_refit, plan_refit, refit_chosen

SELECTION_HEADER = (
    "| family | CV ROC AUC (mean ± std) | configured values' CV ROC AUC | hyperparameters | search "
    "| configurations tried | seconds |\n|---|---|---|---|---|---|---|"
)
SEARCH_OUTCOMES = {
    "searched": "searched",
    "reduced": "reduced to fit the budget",
    "budget_spent": "none: budget spent, configured values kept",
    "no_space": "none: no search space",
}


def describe_values(values: Any) -> str:
    """A search space's values for one parameter, in words."""
    if isinstance(values, dict):
        scale = " (log-uniform)" if values.get("log") else ""
        return f"{values['low']:g} to {values['high']:g}{scale}"
    return ", ".join("none" if value is None else str(value) for value in values)


def describe_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in params.items())


def selection_section(selection: dict[str, Any], winner: str) -> str:
    """How the model was chosen: every family's CV ROC AUC, its search, the spaces, time and budget."""
    families = selection["families"]
    rows = "\n".join(
        f"| {'**' + family['family'] + '** (chosen)' if family['family'] == winner else family['family']} "
        f"| {family['cv_roc_auc']:.4f} ± {family['cv_roc_auc_std']:.4f} "
        f"| {family['configured_cv_roc_auc']:.4f} ± {family['configured_cv_roc_auc_std']:.4f} "
        f"| {describe_params(family['params'])} | {SEARCH_OUTCOMES[family['search']]} "
        f"| {family['configurations_tried']} | {family['seconds']:.1f} |"
        for family in families
    )
    spaces = "\n".join(
        f"| {family} | {name} | {describe_values(values)} |"
        for family, space in selection["search_spaces"].items()
        for name, values in space.items()
    )
    budget = selection["time_budget_seconds"]
    if budget is None:
        competed = "Every family competed with its configured hyperparameters (no search was configured)"
        timing = f"Model selection took {selection['seconds']:.1f} s."
    else:
        competed = (
            "Every family competed with its configured hyperparameters and with the best configuration a\n"
            "successive-halving random search of its space found in its share of the time budget"
        )
        timing = f"Model selection took {selection['seconds']:.1f} s of a {budget:g} s budget."
    return f"""{competed}, each
scored by {selection["cv_folds"]}-fold cross-validated ROC AUC on the same folds of the
{selection["cv_rows"]} training-split rows; the test split played no part. The best mean won.
{timing}

{SELECTION_HEADER}
{rows}

Search spaces (a parameter not listed keeps its configured value):

| family | parameter | values |
|---|---|---|
{spaces or "| (none) | | |"}"""


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
    refit_sampled = (
        f", a stratified sample of the {facts['refit_rows_available']} labelled rows"
        if facts["refit_rows"] < facts["refit_rows_available"]
        else ""
    )
    return f"""# Model card: {facts["model_name"]}

Churn classifier: the probability that an active customer churns, for batch scoring.

## Provenance
| fact | value |
|---|---|
| model family | {facts["model_family"]} (calibrated: {facts["calibration"]}) |
| hyperparameters | {describe_params(facts["model_params"])} |
| score date | {facts["score_date"]} |
| training snapshot | {facts["training_rows"]} rows ({split}) |
| chosen on | {facts["train_rows"]} rows{sampled} |
| tested on | {facts["test_rows"]} held-out rows |
| registered model trained on | {facts["refit_rows"]} rows, both splits{refit_sampled}: refit after evaluation |
| scoring snapshot | {facts["scoring_rows"]} rows |
| data contract | {facts["contract"]} (sha256 {facts["contract_sha256"]}) |
| training fingerprint | {facts["refit_fingerprint"]} |
| code version | {facts["code_version"]} |
| MLflow run | {facts["mlflow_run_id"]} |
| Airflow run | {facts["airflow_run_id"]} |

## Inputs
{facts["inputs"]}

## How it was chosen
{selection_section(facts["selection"], facts["model_family"])}

## Held-out test metrics
The chosen configuration fitted on the training split only, scored on the {facts["test_rows"]} held-out rows.

| metric | value |
|---|---|
| cross-validated ROC AUC (train split) | {facts["cv_roc_auc"]:.4f} |
{metric_rows}

## The registered model
After evaluation had decided on the held-out rows, the chosen configuration (the same
family, hyperparameters and calibration) was refit on all {facts["refit_rows"]} labelled rows, and
that refit is this version. The metrics above are those of the fit on the training split:
the refit has learnt from the test rows, so no held-out measurement of it exists.

## Promotion
{facts["promotion_reason"]}

## Intended use and limits
Ranks active customers by churn risk for retention outreach. Trained on one snapshot of
labelled customers; scores are only as current as that snapshot and assume the scoring
population resembles it.
"""


def inputs_section(contract: Contract) -> str:
    """What the model reads and predicts, and which named columns it never sees, and why."""
    numeric, categorical = model_columns(contract)
    lines = [
        f"- predicts: `{contract.label_column}` churned ({contract.label.describe()})",
        f"- customer id: {' + '.join(f'`{column}`' for column in contract.id_columns)}",
        f"- numeric features: {', '.join(f'`{column}`' for column in numeric) or 'none'}",
        f"- categorical features: {', '.join(f'`{column}`' for column in categorical) or 'none'}",
    ]
    lines += [f"- not modelled: `{column}`, {why}" for column, why in contract.not_modelled.items()]
    return "\n".join(lines)


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
    promote: bool,
    model_card: str,
    compared_champion: str | None = None,
) -> dict[str, Any]:
    """Register (or reuse) the challenger's version, tagged with its data contract and its
    training fingerprint. The champion alias stays: on promotion score moves it once the
    date's scores are published (see :func:`churn.tracking.move_champion`); a promotion
    whose compared champion has since been replaced is refused here already.
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
    # A reused version's card becomes this run's, as its source run does: what it says of the
    # promotion (and its approval) is this run's decision.
    client.update_model_version(model_name, version.version, description=model_card)
    client.set_model_version_tag(model_name, version.version, "source_mlflow_run_id", mlflow_run_id)
    client.set_model_version_tag(model_name, version.version, CONTRACT_TAG, contract_sha256)
    client.log_text(mlflow_run_id, model_card, "model_card.md")
    if promote:
        check_champion_unchanged(model_name, champion_alias, compared_champion, str(version.version))
    champion = aliased_version(model_name, champion_alias)
    return {
        "model_name": model_name,
        "model_version": str(version.version),
        "reused_existing_version": reused,
        "promoted": promote,
        "compared_champion": compared_champion,
        "champion_version": str(champion.version) if champion is not None else None,
    }


def promotion_reason(evaluated: EvaluateResult, approval: ApprovalOutcome | None) -> str:
    """Evaluation's decision in words and, when it asked for approval, why and what came of it."""
    if evaluated.approval is None:
        return evaluated.reason
    outcome = approval.describe() if approval is not None else "not answered: the approval step did not run"
    effect = "" if promotes(evaluated, approval) else "; the champion stays"
    return (
        f"{evaluated.reason}. The promotion waited for approval by "
        f"{', '.join(evaluated.approval.accountable_roles)} ({'; '.join(evaluated.approval.reasons)}): "
        f"{outcome}{effect}."
    )


def model_card(
    validated: ValidateResult,
    trained: TrainResult,
    evaluated: EvaluateResult,
    settings: Settings,
    refit: Refit,
    contract: Contract,
    approval: ApprovalOutcome | None = None,
) -> str:
    """The model card of the run's registered model, from what the earlier phases recorded
    and the rows it was refit on."""
    return render_model_card(
        {
            **trained.model_dump(mode="json", exclude={"run"}),
            "model_name": settings.config.registered_model,
            "calibration": settings.config.training.calibration,
            "model_params": trained.selection.family(trained.model_family).params,
            "score_date": trained.run.score_date.isoformat(),
            "training_rows": validated.training.rows,
            "scoring_rows": validated.scoring.rows,
            "refit_rows": len(refit.rows),
            "refit_rows_available": refit.rows_available,
            "refit_fingerprint": refit.fingerprint,
            "contract": validated.contract_name,
            "contract_sha256": validated.contract_sha256,
            "inputs": inputs_section(contract),
            "code_version": code_version(),
            "airflow_run_id": trained.run.airflow_run_id,
            "metrics": evaluated.metrics,
            "promotion_reason": promotion_reason(evaluated, approval),
        }
    )


def registered_model_uri(trained: TrainResult, refit: Refit, contract: Contract, settings: Settings) -> str:
    """The model to register: the version already made from exactly these inputs, else the
    chosen configuration refit on ``refit.rows`` now and logged to the training's MLflow run."""
    from mlflow import MlflowClient

    known = find_version_by_fingerprint(MlflowClient(), settings.config.registered_model, refit.fingerprint)
    if known is not None:
        return known.source
    training = settings.config.training
    return log_refit(trained, refit, refit_chosen(trained, refit, contract, training), contract)


@accepts_handoffs
def run_package(
    validated: ValidateResult,
    trained: TrainResult,
    evaluated: EvaluateResult,
    settings: Settings | None = None,
    *,
    approval: ApprovalOutcome | None = None,
) -> PackageResult:
    """Refit the run's chosen model on every labelled row and register it with its model card;
    record its promotion (which score's publish step carries out) if evaluation said so and,
    when evaluation asked for approval, ``approval`` says a person approved (see
    :func:`churn.approval.promotes`)."""

    def package() -> PackageResult:
        from churn.airflow_connections import task_settings

        configured = settings or task_settings(mlflow=True)
        use_mlflow(configured)
        contract = load_contract(trained.run.contract)
        refit = plan_refit(trained, contract, configured.config.training)
        registered = register_challenger(
            registered_model_uri(trained, refit, contract, configured),
            trained.mlflow_run_id,
            model_name=configured.config.registered_model,
            champion_alias=configured.config.champion_alias,
            fingerprint=refit.fingerprint,
            contract_sha256=validated.contract_sha256,
            promote=promotes(evaluated, approval),
            compared_champion=evaluated.champion_version,
            model_card=model_card(validated, trained, evaluated, configured, refit, contract, approval),
        )
        asked = approval if evaluated.approval is not None else None
        return PackageResult(run=trained.run, approval=asked, **registered)

    return run_phase("package", trained.run, package)
