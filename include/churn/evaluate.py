"""Model Evaluation: test metrics and plots for the challenger, and the promotion decision.

Both models are compared on the same rows, and only on rows neither was trained on: the
challenger's test split minus every customer the champion was fitted on (its MLflow run's
"training rows", as monitoring finds them). A comparison on too few churned (or retained)
customers to trust, or one that cannot be made fair, keeps the champion. A rerun or
backfill (a date scored before, or earlier than one scored or promoted for) never promotes:
it must not move the alias back to an older model. Such a run skips training, evaluation
and packaging altogether (:func:`phases_to_skip`).
A promotion that changes the measured quality by more than the configured margin, or comes
from a drift-triggered run, waits for a person's approval (:mod:`churn.approval`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from churn.approval import CHALLENGER_CARD, approval_request, metrics_section
from churn.contract import Contract, load_contract
from churn.errors import PhaseSkipped
from churn.handoffs import EvaluateResult, RunContext, SkippedPhases, TrainResult, accepts_handoffs
from churn.manifest import run_phase
from churn.model import label_vector, model_inputs, sized_thread_pools
from churn.settings import QualityGates, Settings
from churn.storage import read_parquet
from churn.tracking import CONTRACT_TAG, champion_version, load_registered_model, promoted_for, use_mlflow
from churn.warehouse import ScoringRecord, open_scores_table, scoring_record

PLOT_DIR = "plots"
IMPORTANCE_ROWS = 2000
# The phases whose only use is a challenger that may be promoted: a run that cannot promote skips them.
PROMOTION_PHASES = ("train", "evaluate", "package")


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


@dataclass(frozen=True)
class Comparison:
    """Both models' ROC AUC on the comparison rows (test rows the champion never trained on),
    and every metric of :func:`classification_metrics` of each on the same rows."""

    challenger_auc: float
    champion_auc: float
    rows: int
    positives: int
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.rows} test rows ({self.positives} churned) neither model was trained on"


def unseen_by_champion(test_ids: pd.Series, champion_training_ids: pd.Series) -> np.ndarray:
    """Which test rows (by customer id) the champion was not trained on."""
    return ~test_ids.isin(set(champion_training_ids.dropna())).to_numpy()


def _short_of(labels: np.ndarray, min_positives: int, min_negatives: int) -> tuple[int, int] | None:
    """The churned and retained counts of ``labels`` when either is below its minimum, else None."""
    positives = int(np.sum(labels))
    negatives = len(labels) - positives
    return None if positives >= min_positives and negatives >= min_negatives else (positives, negatives)


def too_few_to_trust(labels: np.ndarray, min_positives: int, min_negatives: int) -> str | None:
    """Why the test split's ``labels`` are too few to trust any ROC AUC measured on them (the
    quality floor's included), or None: with no champion, the floor alone decides a promotion."""
    if (counts := _short_of(labels, min_positives, min_negatives)) is None:
        return None
    positives, negatives = counts
    return (
        f"the test split holds only {positives} churned and {negatives} retained customers, too few to trust "
        f"its ROC AUC: a promotion needs at least {min_positives} and {min_negatives} "
        "(quality_gates.min_comparison_positives / min_comparison_negatives), so nothing is promoted. Train on "
        "a larger snapshot"
    )


def too_few_to_compare(labels: np.ndarray, excluded: int, min_positives: int, min_negatives: int) -> str | None:
    """Why the comparison rows' ``labels`` are too few to trust a comparison on, or None.

    ``excluded`` test rows were left out because the champion was trained on them.
    """
    if (counts := _short_of(labels, min_positives, min_negatives)) is None:
        return None
    positives, negatives = counts
    return (
        f"only {len(labels)} test rows ({positives} churned, {negatives} not) were unseen by the champion "
        f"({excluded} of the test rows were among its training customers); comparing the models needs at least "
        f"{min_positives} churned and {min_negatives} retained customers "
        "(quality_gates.min_comparison_positives / min_comparison_negatives): the champion is kept. "
        "Train on a later snapshot with new customers, or a larger one"
    )


def top_decile_lift(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Churn rate among the 10% highest-scored customers, over the overall churn rate."""
    labels = np.asarray(labels)
    if labels.sum() == 0:
        raise ValueError("lift is undefined when no customer churned")
    top = np.argsort(-np.asarray(probabilities), kind="stable")[: max(1, int(np.ceil(len(labels) * 0.1)))]
    return float(labels[top].mean() / labels.mean())


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """Ranking, calibration and operating-point metrics on held-out rows."""
    predicted = (probabilities >= threshold).astype(int)
    return {
        "test_roc_auc": float(roc_auc_score(labels, probabilities)),
        "test_pr_auc": float(average_precision_score(labels, probabilities)),
        "test_brier": float(brier_score_loss(labels, probabilities)),
        "test_log_loss": float(log_loss(labels, probabilities, labels=[0, 1])),
        "test_precision_at_threshold": float(precision_score(labels, predicted, zero_division=0)),
        "test_recall_at_threshold": float(recall_score(labels, predicted, zero_division=0)),
        "test_top_decile_lift": top_decile_lift(labels, probabilities),
    }


def promotion_frozen_before(champion_promoted_for: date | None, record: ScoringRecord) -> date | None:
    """The latest date scored (``record.latest_date``) or promoted for: runs for dates before it
    never promote. None before the first."""
    return max((day for day in (champion_promoted_for, record.latest_date) if day is not None), default=None)


def why_held_back(
    score_date: date, champion_promoted_for: date | None, record: ScoringRecord, *, drift_triggered: bool = False
) -> str | None:
    """Why a run for ``score_date`` must not move the champion (a rerun or backfill), or None.

    A date scored before keeps its model, unless monitoring's drift on it started this run
    (``drift_triggered``): retraining is what that run is for. A date earlier than one already
    scored or promoted for is history: moving the alias from there would undo a newer decision.
    """
    if record.version_for_date is not None and not drift_triggered:
        return (
            f"{score_date} was scored before by version {record.version_for_date}: reruns and backfills of a "
            "scored date keep its model and never move the champion"
        )
    later = promotion_frozen_before(champion_promoted_for, record)
    if later is not None and score_date < later:
        return (
            f"this run is for {score_date}, before {later}, which has already been scored or promoted for: "
            "runs for past dates (backfills) never move the champion"
        )
    return None


def phases_to_skip(
    run: RunContext, champion_promoted_for: date | None, record: ScoringRecord
) -> SkippedPhases | None:
    """What a run that cannot promote (see :func:`why_held_back`) skips, and why; None when it
    can promote and so runs every phase.

    Such a run could never use a challenger: scoring takes the date's model of record (the
    version that scored it before, else the champion), so training, evaluating and packaging
    one would cost minutes for nothing.
    """
    held_back = why_held_back(run.score_date, champion_promoted_for, record, drift_triggered=run.drift_triggered)
    if held_back is None:
        return None
    return SkippedPhases(
        run=run,
        phases=list(PROMOTION_PHASES),
        reason=f"this run cannot promote ({held_back}); score uses the date's model of record",
    )


def decide_promotion(
    challenger_auc: float,
    champion_auc: float | None,
    min_auc: float,
    *,
    held_back: str | None = None,
    champion_incomparable: str | None = None,
    comparison: Comparison | None = None,
    unfair: str | None = None,
    untrusted: str | None = None,
) -> PromotionDecision:
    """Promote a challenger that clears the quality floor (its ``challenger_auc`` on all its
    test rows) and is at least as good as the champion on the ``comparison`` rows.

    Never from a run that is held back (see :func:`why_held_back`), nor when the test split
    holds too few of either class to trust its figure (``untrusted`` says why), nor when the
    comparison cannot be made fair or trusted (``unfair`` says why). A champion that cannot score these
    rows (``champion_incomparable`` says why) leaves the floor to decide.
    """
    if held_back:
        return PromotionDecision(False, held_back)
    if untrusted:
        return PromotionDecision(False, untrusted)
    if challenger_auc < min_auc:
        return PromotionDecision(
            False, f"challenger test ROC AUC {challenger_auc:.4f} is below the quality floor {min_auc:.4f}"
        )
    if champion_incomparable:
        return PromotionDecision(True, f"{champion_incomparable}; challenger clears the floor {min_auc:.4f}")
    if unfair:
        return PromotionDecision(False, unfair)
    if comparison is None:
        if champion_auc is None:
            return PromotionDecision(True, f"no champion yet; challenger clears the floor {min_auc:.4f}")
        comparison = Comparison(challenger_auc, champion_auc, 0, 0)
        on = "the same test rows"
    else:
        on = comparison.describe()
    if comparison.challenger_auc >= comparison.champion_auc:
        return PromotionDecision(
            True, f"challenger {comparison.challenger_auc:.4f} >= champion {comparison.champion_auc:.4f} on {on}"
        )
    return PromotionDecision(
        False, f"challenger {comparison.challenger_auc:.4f} < champion {comparison.champion_auc:.4f} on {on}"
    )


def champion_metrics_on(
    champion: Any, inputs: pd.DataFrame, labels: np.ndarray, contract: Contract, threshold: float
) -> dict[str, float] | None:
    """The champion's metrics (those of :func:`classification_metrics`) on the challenger's
    test rows; None when, trained under another data contract, it cannot score them at all."""
    model = load_registered_model(champion.name, champion.version)
    try:
        probabilities = model.predict_proba(inputs)[:, 1]
    except Exception:  # a model made for other columns fails in its own ways
        if champion.tags.get(CONTRACT_TAG, contract.fingerprint) == contract.fingerprint:
            raise
        return None
    return classification_metrics(labels, probabilities, threshold)


def evaluation_plots(model: Any, inputs: pd.DataFrame, labels: np.ndarray, probabilities: np.ndarray, seed: int):
    """ROC, precision-recall, calibration and permutation-importance plots, by file name, each
    titled and with its axes named in words."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import CalibrationDisplay
    from sklearn.inspection import permutation_importance
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    figures = {}
    for name, title, x_label, y_label, draw in (
        (
            "roc_curve",
            "ROC curve",
            "False positive rate",
            "True positive rate",
            lambda ax: RocCurveDisplay.from_predictions(labels, probabilities, ax=ax, name="challenger"),
        ),
        (
            "precision_recall_curve",
            "Precision-recall curve",
            "Recall",
            "Precision",
            lambda ax: PrecisionRecallDisplay.from_predictions(labels, probabilities, ax=ax, name="challenger"),
        ),
        (
            "calibration_curve",
            "Calibration curve",
            "Mean predicted churn probability",
            "Fraction of customers who churned",
            lambda ax: CalibrationDisplay.from_predictions(
                labels, probabilities, n_bins=10, ax=ax, name="challenger"
            ),
        ),
    ):
        figure, axis = plt.subplots(figsize=(6, 5))
        draw(axis)
        axis.set(title=title, xlabel=x_label, ylabel=y_label)
        figure.tight_layout()
        figures[name] = figure
    sample = inputs.sample(n=min(IMPORTANCE_ROWS, len(inputs)), random_state=seed)
    importance = permutation_importance(
        model,
        sample,
        labels[inputs.index.get_indexer(sample.index)],
        scoring="roc_auc",
        n_repeats=5,
        random_state=seed,
    )
    order = np.argsort(importance.importances_mean)
    figure, axis = plt.subplots(figsize=(7, 7))
    axis.barh(
        np.array(inputs.columns)[order],
        importance.importances_mean[order],
        xerr=importance.importances_std[order],
    )
    axis.set_xlabel("drop in test ROC AUC when the column is shuffled")
    axis.set_title("Permutation feature importance")
    figure.tight_layout()
    figures["feature_importance"] = figure
    return figures


def champion_training_ids(champion: Any, contract: Contract) -> pd.Series:
    """The customer ids of every labelled row the champion's training run had: the rows its
    registered refit was fitted on, or a superset of them (its MLflow run's "training rows",
    which monitoring compares with too)."""
    from churn.monitor import find_reference, labelled_customers, readable_reference

    reference = find_reference(champion.name, str(champion.version))
    return labelled_customers(readable_reference(reference), contract)["customer_id"]


def compare_with_champion(
    champion: Any,
    test: pd.DataFrame,
    challenger_probabilities: np.ndarray,
    contract: Contract,
    quality_gates: QualityGates,
) -> tuple[Comparison | None, str | None]:
    """Both models' metrics on the test rows the champion never trained on; or None and why
    no fair, trustworthy comparison can be made (then the champion is kept)."""
    from churn.monitor import MonitoringError

    try:
        trained_on = champion_training_ids(champion, contract)
    except MonitoringError as error:
        return None, (
            f"the customers champion version {champion.version} was trained on cannot be found ({error}), so "
            "no comparison on rows it never saw can be made: the champion is kept"
        )
    unseen = unseen_by_champion(contract.customer_ids(test), trained_on)
    labels = label_vector(test, contract)[unseen]
    refused = too_few_to_compare(
        labels,
        len(test) - int(unseen.sum()),
        quality_gates.min_comparison_positives,
        quality_gates.min_comparison_negatives,
    )
    if refused:
        return None, refused
    inputs = model_inputs(test, contract)[unseen]
    threshold = quality_gates.operating_threshold
    champion_metrics = champion_metrics_on(champion, inputs, labels, contract, threshold)
    challenger_metrics = classification_metrics(labels, challenger_probabilities[unseen], threshold)
    comparison = Comparison(
        challenger_metrics["test_roc_auc"],
        champion_metrics["test_roc_auc"],
        len(labels),
        int(labels.sum()),
        challenger_metrics=challenger_metrics,
        champion_metrics=champion_metrics,
    )
    return comparison, None


def evaluate_challenger(
    trained: TrainResult,
    contract: Contract,
    *,
    quality_gates: QualityGates,
    champion: Any | None,
    held_back: str | None,
    seed: int,
) -> EvaluateResult:
    """Score the challenger on the test rows, and both it and the champion (if any) on the
    test rows the champion never trained on; log and decide."""
    import matplotlib.pyplot as plt
    import mlflow
    import mlflow.sklearn

    test = read_parquet(trained.test_path).reset_index(drop=True)
    inputs, labels = model_inputs(test, contract), label_vector(test, contract)
    challenger = mlflow.sklearn.load_model(trained.model_uri)
    probabilities = challenger.predict_proba(inputs)[:, 1]
    metrics = classification_metrics(labels, probabilities, quality_gates.operating_threshold)
    comparison = unfair = champion_incomparable = None
    if champion is not None:
        if champion.tags.get(CONTRACT_TAG, contract.fingerprint) != contract.fingerprint:
            champion_incomparable = (
                f"champion version {champion.version} was trained under another data contract and cannot score "
                "these rows"
            )
        else:
            comparison, unfair = compare_with_champion(champion, test, probabilities, contract, quality_gates)
    decision = decide_promotion(
        metrics["test_roc_auc"],
        None,
        quality_gates.min_test_roc_auc,
        held_back=held_back,
        champion_incomparable=champion_incomparable,
        comparison=comparison,
        unfair=unfair,
        untrusted=too_few_to_trust(
            labels, quality_gates.min_comparison_positives, quality_gates.min_comparison_negatives
        ),
    )
    evaluated = EvaluateResult(
        run=trained.run,
        metrics=metrics,
        champion_version=str(champion.version) if champion is not None else None,
        champion_test_roc_auc=comparison.champion_auc if comparison else None,
        challenger_comparison_roc_auc=comparison.challenger_auc if comparison else None,
        comparison_rows=comparison.rows if comparison else None,
        comparison_positives=comparison.positives if comparison else None,
        challenger_comparison_metrics=comparison.challenger_metrics if comparison else None,
        champion_comparison_metrics=comparison.champion_metrics if comparison else None,
        promote=decision.promote,
        reason=decision.reason,
    )
    with mlflow.start_run(run_id=trained.mlflow_run_id):
        mlflow.log_metrics(metrics)
        if comparison is not None:
            mlflow.log_metrics(comparison_metrics_to_track(comparison))
        mlflow.set_tags(
            {
                "promotion_decision": "promote" if decision.promote else "keep_champion",
                "promotion_reason": decision.reason,
            }
        )
        for name, figure in evaluation_plots(challenger, inputs, labels, probabilities, seed).items():
            mlflow.log_figure(figure, f"{PLOT_DIR}/{name}.png")
            plt.close(figure)
        mlflow.log_text(challenger_card(trained, evaluated), CHALLENGER_CARD)
    return evaluated


def comparison_metrics_to_track(comparison: Comparison) -> dict[str, float]:
    """The comparison's figures as the challenger's MLflow run records them: the champion's
    metric ``test_x`` as ``champion_test_x``, the challenger's on the same rows as
    ``challenger_comparison_x``."""
    return {
        **{f"champion_{name}": value for name, value in comparison.champion_metrics.items()},
        **{
            f"challenger_comparison_{name.removeprefix('test_')}": value
            for name, value in comparison.challenger_metrics.items()
        },
        "comparison_rows": comparison.rows,
        "comparison_positives": comparison.positives,
    }


def challenger_card(trained: TrainResult, evaluated: EvaluateResult) -> str:
    """What the challenger is and how it measured, in Markdown, for the person who approves
    its promotion before it is packaged (the registered version's model card comes then)."""
    from churn.package import describe_params, selection_section

    family = trained.selection.family(trained.model_family)
    return f"""# Challenger of {trained.run.score_date}

The model this run trained and evaluated: the chosen configuration fitted on the training
split only. If it is promoted, packaging refits it on every labelled row and registers that
refit with its model card.

| fact | value |
|---|---|
| model family | {trained.model_family} |
| hyperparameters | {describe_params(family.params)} |
| trained on | {trained.train_rows} rows of the training split |
| tested on | {trained.test_rows} held-out rows |
| cross-validated ROC AUC (train split) | {trained.cv_roc_auc:.4f} |
| training fingerprint | {trained.training_fingerprint} |
| Airflow run | {trained.run.airflow_run_id} |

## Measured against the champion
{metrics_section(evaluated)}

## Decision
{"promote" if evaluated.promote else "keep the champion"}: {evaluated.reason}.

## How it was chosen
{selection_section(trained.selection.model_dump(mode="json"), trained.model_family)}
"""


def champion_and_record(score_date: date, settings: Settings) -> tuple[Any | None, ScoringRecord]:
    """The registry's champion version (None before the first promotion) and the warehouse's
    record of the dates its model scored: what tells whether a run for ``score_date`` is a
    rerun or backfill."""
    use_mlflow(settings)
    champion = champion_version(settings)
    with open_scores_table(settings) as (engine, table):
        return champion, scoring_record(engine, table, score_date, settings.config.registered_model)


def skip_unless_promotable(run: RunContext, settings: Settings) -> None:
    """Raise :class:`~churn.errors.PhaseSkipped` if ``run`` cannot promote (see
    :func:`phases_to_skip`), before any work it has no use for."""
    champion, record = champion_and_record(run.score_date, settings)
    skipped = phases_to_skip(run, promoted_for(champion), record)
    if skipped is not None:
        raise PhaseSkipped(skipped)


def with_approval_request(
    evaluated: EvaluateResult,
    trained: TrainResult,
    settings: Settings,
    *,
    drift_triggered: bool,
    drift_events: list[dict[str, Any]],
) -> EvaluateResult:
    """``evaluated`` with the request its promotion waits on, if it needs approval (see
    :func:`churn.approval.approval_needs`), linking the challenger's MLflow run and the champion."""
    import mlflow

    from churn.links import mlflow_run_url, mlflow_ui_url, model_version_url

    mlflow_ui = mlflow_ui_url()
    experiment_id = mlflow.get_run(trained.mlflow_run_id).info.experiment_id
    champion = evaluated.champion_version
    request = approval_request(
        evaluated,
        approvals=settings.config.approvals,
        drift_triggered=drift_triggered,
        drift_events=drift_events,
        challenger_run_url=mlflow_run_url(mlflow_ui, experiment_id, trained.mlflow_run_id),
        champion_version_url=model_version_url(mlflow_ui, settings.config.registered_model, champion)
        if champion
        else None,
    )
    return evaluated.model_copy(update={"approval": request})


def decide_for_run(
    trained: TrainResult, settings: Settings, *, drift_events: list[dict[str, Any]] | None = None
) -> EvaluateResult:
    """Evaluate the run's challenger against the current champion, held back if the run is a
    rerun or backfill (which the warehouse's record of scored dates tells), and say whether
    its promotion waits for approval."""
    run = trained.run
    champion, record = champion_and_record(run.score_date, settings)
    with sized_thread_pools():
        evaluated = evaluate_challenger(
            trained,
            load_contract(run.contract),
            quality_gates=settings.config.quality_gates,
            champion=champion,
            held_back=why_held_back(
                run.score_date, promoted_for(champion), record, drift_triggered=run.drift_triggered
            ),
            seed=settings.config.training.seed,
        )
    return with_approval_request(
        evaluated, trained, settings, drift_triggered=run.drift_triggered, drift_events=drift_events or []
    )


@accepts_handoffs
def run_evaluate(
    trained: TrainResult,
    settings: Settings | None = None,
    *,
    drift_events: list[dict[str, Any]] | None = None,
) -> EvaluateResult:
    """Evaluate the run's challenger on its held-out rows and decide whether to promote it,
    and whether the promotion waits for approval (always, when monitoring's drift started the
    run); ``drift_events`` carry what drifted (its asset events' extras)."""

    def evaluate() -> EvaluateResult:
        from churn.airflow_connections import task_settings

        return decide_for_run(
            trained,
            settings or task_settings(warehouse=True, mlflow=True),
            drift_events=drift_events,
        )

    return run_phase("evaluate", trained.run, evaluate)
