"""What each lifecycle phase hands to the next: small typed records, JSON in XCom and in
the run folder's manifests.

Each task takes exactly the upstream records it uses, so the DAG's wiring shows the real
data flow. Records hold references (paths in the run folder, MLflow run ids, registered
model versions) and a few figures, never data. Paths are run-storage locations (local or
object storage, see :mod:`churn.locations`), written as URLs.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, validate_call

from churn.locations import Location


class Handoff(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _many(count: int, noun: str, plural: str | None = None) -> str:
    """``1 row``, ``5,000 rows``."""
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def _rows(count: int) -> str:
    return _many(count, "row")


def shrinkage(rows: int, compared_rows: int) -> str:
    """How much smaller ``rows`` is than ``compared_rows``, as a percentage rounded down: 1 row
    against 5,000 reads "99.9% fewer", never "100.0% fewer" while a row is left."""
    tenths = 1000 * (compared_rows - rows) // compared_rows  # in integers: 7 of 100 is 93.0%, not 92.9%
    return f"{tenths // 10}.{tenths % 10}% fewer"


def _counts(counts: dict[str, int]) -> str:
    """``{"low": 3052, "high": 662}`` as ``low 3,052, high 662``."""
    return ", ".join(f"{name} {count:,}" for name, count in counts.items())


class RunContext(Handoff):
    """One pipeline run: which Airflow run, for which date, in which folder, under which contract."""

    airflow_run_id: str
    score_date: date
    run_dir: Location
    contract: str
    # Monitoring's drift event started the run (Airflow's run type asset_triggered): a retraining
    # run, which may promote for a date already scored and then scores it again.
    drift_triggered: bool = False
    # The run's parameters that lift a guard, recorded in every manifest: a score date outside
    # the configured window (ingest), a scoring snapshot much smaller than the date's scores (validate).
    allow_any_score_date: bool = False
    allow_shrink: bool = False


class PhaseResult(Handoff):
    """A phase's result always says which run it belongs to."""

    run: RunContext


class LandedSnapshot(Handoff):
    source: str
    path: Location
    format: Literal["csv", "parquet"]
    bytes: int
    sha256: str

    def summary(self) -> str:
        return f"{self.source} ({self.format}, {self.bytes:,} bytes, sha256 {self.sha256[:12]})"


class IngestResult(PhaseResult):
    training: LandedSnapshot
    scoring: LandedSnapshot

    def summary(self) -> str:
        return (
            f"ingest: landed the training snapshot from {self.training.summary()} and the scoring snapshot "
            f"from {self.scoring.summary()} in {self.run.run_dir}"
        )


class ValidatedSnapshot(Handoff):
    rows: int
    expectations: int
    path: Location


class ShrinkAllowed(Handoff):
    """A scoring snapshot much smaller than the warehouse's scores for ``compared_date`` (the
    run's date, or the latest scored before it), let through by the run parameter allow_shrink."""

    scoring_rows: int
    compared_date: date
    compared_rows: int
    max_drop_fraction: float

    def describe(self) -> str:
        return (
            f"a scoring snapshot of {_rows(self.scoring_rows)}, "
            f"{shrinkage(self.scoring_rows, self.compared_rows)} than the "
            f"{self.compared_rows:,} scores of {self.compared_date} (more than {self.max_drop_fraction:.0%} "
            "fewer is refused); allowed by the run parameter allow_shrink"
        )


class ValidateResult(PhaseResult):
    contract_name: str
    contract_sha256: str
    report: Location
    training: ValidatedSnapshot
    scoring: ValidatedSnapshot
    # None: the shrink guard had nothing to allow.
    shrink_allowed: ShrinkAllowed | None = None

    def summary(self) -> str:
        allowed = f"; {self.shrink_allowed.describe()}" if self.shrink_allowed else ""
        return (
            f"validate: training snapshot ({_rows(self.training.rows)}) passed {self.training.expectations} "
            f"expectations, scoring snapshot ({_rows(self.scoring.rows)}) passed {self.scoring.expectations}, "
            f"of contract {self.contract_name}; report {self.report}{allowed}"
        )


class FeatureResult(PhaseResult):
    derived_features: list[str]
    unseen_categories: dict[str, list[str]]
    training_path: Location
    scoring_path: Location

    def summary(self) -> str:
        unseen = (
            f"scoring has values unseen in training in {', '.join(sorted(self.unseen_categories))}"
            if self.unseen_categories
            else "no category in scoring is unseen in training"
        )
        derived = self.derived_features
        added = (
            f"{_many(len(derived), 'derived feature')} ({', '.join(derived)})"
            if derived
            else "no derived features"
        )
        return f"feature: added {added} to the training and scoring tables; {unseen}"


class FamilySelection(Handoff):
    """One model family in model selection: the hyperparameters it competes with and their
    cross-validated ROC AUC on the training split, how its search went and what it cost."""

    family: str
    params: dict[str, Any]
    cv_roc_auc: float
    cv_roc_auc_std: float
    # Its configured hyperparameters' score: the search's starting point and fallback.
    configured_cv_roc_auc: float
    configured_cv_roc_auc_std: float
    # searched: as many configurations as max_candidates allows; reduced: fewer, to fit the
    # budget; budget_spent: none, the budget was gone; no_space: no search space configured.
    search: Literal["searched", "reduced", "budget_spent", "no_space"]
    configurations_tried: int
    seconds: float


class ModelSelection(Handoff):
    """How the winner was chosen: every family's result, the search spaces, time and budget."""

    families: list[FamilySelection]
    # Each family's search space as configured (lists of values, or ranges).
    search_spaces: dict[str, dict[str, Any]]
    # None: no search configured, the families competed with their configured values.
    time_budget_seconds: float | None
    seconds: float
    # The training-split rows every score was cross-validated on, in cv_folds folds.
    cv_rows: int
    cv_folds: int

    def family(self, name: str) -> FamilySelection:
        return next(family for family in self.families if family.family == name)


class TrainResult(PhaseResult):
    mlflow_run_id: str
    model_uri: str
    model_family: str
    cv_roc_auc: float
    training_fingerprint: str
    train_rows: int
    # The rows of the training split before sampling; train_rows when it was not sampled.
    train_rows_available: int
    test_rows: int
    test_path: Location
    # Every labelled row (both splits): package refits the chosen configuration on them.
    labelled_path: Location
    selection: ModelSelection

    def summary(self) -> str:
        selection = self.selection
        sampled = (
            f" (a sample of {self.train_rows_available:,})" if self.train_rows < self.train_rows_available else ""
        )
        families = _many(len(selection.families), "family", "families")
        return (
            f"train: {self.model_family} chosen by CV ROC AUC {self.cv_roc_auc:.3f} among {families} in "
            f"{selection.seconds:.0f} s ({selection.cv_folds}-fold on {_rows(selection.cv_rows)}); "
            f"trained on {_rows(self.train_rows)}{sampled}, {_rows(self.test_rows)} held out for evaluate; "
            f"MLflow run {self.mlflow_run_id}"
        )


class ApprovalRequest(Handoff):
    """Why a promotion waits for a person's approval, whom the request is assigned to (the
    Accountable roles of the phases that ask, and their Airflow users) and what it shows them."""

    reasons: list[str]
    accountable_roles: list[str]
    respondents: list[str]
    subject: str
    # Markdown: the challenger's and champion's metrics, the allowed change, what drifted, links.
    body: str


class ApprovalOutcome(Handoff):
    """What came of a promotion's approval: not needed, approved, rejected, or unanswered in time
    (which counts as rejected); who answered and when."""

    decision: Literal["not_needed", "approved", "rejected", "timed_out"]
    reasons: list[str] = []
    responded_by: str | None = None
    responded_at: datetime | None = None

    @property
    def allows_promotion(self) -> bool:
        return self.decision in ("not_needed", "approved")

    def describe(self) -> str:
        """The outcome in words, e.g. ``approved by admin at 2026-11-30 04:10 UTC``."""
        at = f" at {self.responded_at:%Y-%m-%d %H:%M} UTC" if self.responded_at else ""
        if self.decision == "not_needed":
            return "no approval needed"
        if self.decision == "timed_out":
            return f"no answer in time{at}, counted as rejected"
        return f"{self.decision} by {self.responded_by}{at}"

    def summary(self) -> str:
        asked = f" (asked because {'; '.join(self.reasons)})" if self.reasons else ""
        kept = "" if self.allows_promotion else "; the champion stays"
        return f"approve: {self.describe()}{asked}{kept}"


class EvaluateResult(PhaseResult):
    metrics: dict[str, float]
    champion_version: str | None
    # Both models' ROC AUC on the comparison rows: test rows the champion never trained on.
    champion_test_roc_auc: float | None
    challenger_comparison_roc_auc: float | None = None
    comparison_rows: int | None = None
    comparison_positives: int | None = None
    # Every metric of ``metrics`` for both models on the comparison rows (names as in ``metrics``).
    challenger_comparison_metrics: dict[str, float] | None = None
    champion_comparison_metrics: dict[str, float] | None = None
    promote: bool
    reason: str
    # None: the promotion (if any) needs nobody's approval.
    approval: ApprovalRequest | None = None

    def summary(self) -> str:
        if self.champion_version is None:
            champion = "no champion to compare"
        elif self.champion_test_roc_auc is None or self.challenger_comparison_roc_auc is None:
            champion = f"champion version {self.champion_version} not compared"
        else:
            champion = (
                f"on {self.comparison_rows} rows unseen by champion version {self.champion_version}: challenger "
                f"{self.challenger_comparison_roc_auc:.3f}, champion {self.champion_test_roc_auc:.3f}"
            )
        auc = self.metrics.get("test_roc_auc")
        challenger = f"test ROC AUC {auc:.3f}" if auc is not None else "no test ROC AUC"
        decision = "promote" if self.promote else "keep_champion"
        approval = f"; waits for approval: {'; '.join(self.approval.reasons)}" if self.approval else ""
        return f"evaluate: {challenger} ({champion}); decision: {decision} ({self.reason}){approval}"


class PackageResult(PhaseResult):
    model_name: str
    model_version: str
    reused_existing_version: bool
    # This run promotes the version: score scores the date with it, and its publish step
    # moves the champion alias to it once the date's scores are written.
    promoted: bool
    # The champion when packaged (the alias has not moved yet), and the one evaluation compared with.
    champion_version: str | None
    compared_champion: str | None = None
    # None: evaluation asked for no approval.
    approval: ApprovalOutcome | None = None

    def summary(self) -> str:
        how = "reused: the same refit was registered before" if self.reused_existing_version else "a new refit"
        champion = (
            f"champion is version {self.champion_version}" if self.champion_version else "no version is champion"
        )
        if self.promoted:
            champion += (
                f"; version {self.model_version} is promoted: it becomes champion once score publishes the date"
            )
        else:
            champion += " (unchanged)"
        approval = f"; promotion {self.approval.describe()}" if self.approval else ""
        return f"package: registered {self.model_name} version {self.model_version} ({how}); {champion}{approval}"


class SkippedPhases(PhaseResult):
    """Phases a run skips, and why: a run that cannot promote (a rerun or backfill) has no use
    for a challenger, so it trains, evaluates and packages none."""

    phases: list[str]
    reason: str

    def summary(self) -> str:
        return f"{self.phases[0]}: skipped {', '.join(self.phases)}: {self.reason}"


class ScoringPartition(PhaseResult):
    """One scoring task's share of the date: rows ``first_row`` to ``end_row`` (exclusive) of
    the scoring features, scored with the date's model of record and staged under ``staging_key``."""

    index: int
    partitions: int
    first_row: int
    end_row: int
    features_path: Location
    model_name: str
    model_version: str
    model_chosen_because: str
    # What the version is (see churn.tracking.ModelIdentity), written with every row.
    model_run_id: str
    training_fingerprint: str | None
    # The version that had scored the date when the model was chosen (None: not scored yet).
    version_seen_for_date: str | None
    # Names the plan's staging table (see churn.warehouse.staging_table); new to every plan.
    staging_key: str
    # This run promotes the version: publish moves the champion alias to it from
    # ``compared_champion`` (None: no champion yet) once the date's rows are written.
    promotes: bool = False
    compared_champion: str | None = None

    def rows(self) -> str:
        """Its customers as the UI names its task: ``rows 0-1,000,000``."""
        return f"rows {self.first_row:,}-{self.end_row:,}"


class ScoredPartition(Handoff):
    partition: ScoringPartition
    rows_staged: int
    risk_band_counts: dict[str, int]

    def summary(self) -> str:
        part = self.partition
        return (
            f"score.partition {part.rows()}: staged {_rows(self.rows_staged)} scored by {part.model_name} "
            f"version {part.model_version} ({_counts(self.risk_band_counts)})"
        )


class ScoreResult(PhaseResult):
    rows_written: int
    table: str
    warehouse: str
    model_version: str
    model_chosen_because: str
    risk_band_counts: dict[str, int]
    partitions: int
    # The champion alias was moved to model_version once the rows were written.
    promoted: bool = False

    def summary(self) -> str:
        promoted = "; the champion alias now names it" if self.promoted else ""
        return (
            f"score.publish: {_rows(self.rows_written)} for {self.run.score_date} in {self.table} at "
            f"{self.warehouse} ({_counts(self.risk_band_counts)}), model version {self.model_version}{promoted}, "
            f"from {_many(self.partitions, 'partition')}"
        )


class MonitorResult(PhaseResult):
    """How far the date's inputs and scores moved from the training data of the model that
    scored them, where that is written, and whether it asks for a retraining run."""

    model_version: str
    # Where the reference came from: the training feature table the version's MLflow run logged.
    reference_path: str
    reference_mlflow_run_id: str
    table: str
    rows_written: int
    report: Location
    # Every model input whose PSI is above the threshold, with its PSI.
    drifted_features: dict[str, float]
    prediction_psi: float | None
    feature_psi_threshold: float
    prediction_psi_threshold: float
    realised_roc_auc: float | None
    # The earlier score date the realised ROC AUC judges, and how many of its customers.
    realised_auc_score_date: date | None
    realised_auc_customers: int
    retraining_requested: bool
    retraining_reason: str

    @property
    def drifted(self) -> bool:
        return bool(self.drifted_features) or (
            self.prediction_psi is not None and self.prediction_psi > self.prediction_psi_threshold
        )

    def drift_event_extra(self) -> dict[str, Any]:
        """What the drift asset's event says: which date and run, what drifted and by how much."""
        return {
            "score_date": self.run.score_date.isoformat(),
            "run_id": self.run.airflow_run_id,
            "model_version": self.model_version,
            "drifted_features": self.drifted_features,
            "prediction_psi": self.prediction_psi,
            "thresholds": {
                "feature_psi": self.feature_psi_threshold,
                "prediction_psi": self.prediction_psi_threshold,
            },
            "report": str(self.report),
        }

    def summary(self) -> str:
        drift = (
            ", ".join(f"{name} {psi:.3f}" for name, psi in self.drifted_features.items())
            if self.drifted_features
            else "none"
        )
        prediction = "n/a" if self.prediction_psi is None else f"{self.prediction_psi:.3f}"
        realised = (
            f"realised ROC AUC {self.realised_roc_auc:.3f} of the {self.realised_auc_score_date} scores "
            f"({self.realised_auc_customers:,} customers labelled since)"
            if self.realised_roc_auc is not None
            else "no earlier scores labelled yet"
        )
        return (
            f"monitor: version {self.model_version} against its training data: features above PSI "
            f"{self.feature_psi_threshold}: {drift}; prediction PSI {prediction}; {realised}; "
            f"{_rows(self.rows_written)} in {self.table}; {self.retraining_reason}; report {self.report}"
        )


class PhaseFailure(Handoff):
    """Why a phase failed, in the words it raised, for people reading the run folder."""

    phase: str
    error_type: str
    error: str


# Each phase's result type, in lifecycle order (the RACI matrix's, checked by the tests).
RESULT_TYPES: dict[str, type[PhaseResult]] = {
    "ingest": IngestResult,
    "validate": ValidateResult,
    "feature": FeatureResult,
    "train": TrainResult,
    "evaluate": EvaluateResult,
    "package": PackageResult,
    "score": ScoreResult,
    "monitor": MonitorResult,
}


def plan_summary(partitions: list[ScoringPartition]) -> str:
    """What ``score.plan`` decided: how the date's customers are split, and which model scores them."""
    first = partitions[0]
    customers = sum(part.end_row - part.first_row for part in partitions)
    return (
        f"score.plan: {_many(len(partitions), 'partition')} of "
        f"{_rows(customers)} for {first.run.score_date}, scored with {first.model_name} version "
        f"{first.model_version} because {first.model_chosen_because}"
    )


def summary(result: object) -> str | None:
    """One or a few lines saying, in words, what the phase (or step) that returned ``result``
    did; None for a result that has no account of itself."""
    if isinstance(result, list) and result and all(isinstance(part, ScoringPartition) for part in result):
        return plan_summary(result)
    describe = getattr(result, "summary", None)
    return describe() if isinstance(result, Handoff) and callable(describe) else None


# Phase entry points take upstream results as records or as the JSON dictionaries XCom
# carries, and turn the latter into records before any work starts.
accepts_handoffs = validate_call(config=ConfigDict(arbitrary_types_allowed=True))
