"""What each lifecycle phase hands to the next: small typed records, JSON in XCom and in
the run folder's manifests.

Each task takes exactly the upstream records it uses, so the DAG's wiring shows the real
data flow. Records hold references (paths in the run folder, MLflow run ids, registered
model versions) and a few figures, never data. Paths are run-storage locations (local or
object storage, see :mod:`churn.locations`), written as URLs.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, validate_call

from churn.locations import Location


class Handoff(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class RunContext(Handoff):
    """One pipeline run: which Airflow run, for which date, in which folder, under which contract."""

    airflow_run_id: str
    score_date: date
    run_dir: Location
    contract: str


class PhaseResult(Handoff):
    """A phase's result always says which run it belongs to."""

    run: RunContext


class LandedSnapshot(Handoff):
    source: str
    path: Location
    format: Literal["csv", "parquet"]
    bytes: int
    sha256: str


class IngestResult(PhaseResult):
    training: LandedSnapshot
    scoring: LandedSnapshot


class ValidatedSnapshot(Handoff):
    rows: int
    expectations: int
    path: Location


class ValidateResult(PhaseResult):
    contract_name: str
    contract_sha256: str
    report: Location
    training: ValidatedSnapshot
    scoring: ValidatedSnapshot


class FeatureResult(PhaseResult):
    derived_features: list[str]
    unseen_categories: dict[str, list[str]]
    training_path: Location
    scoring_path: Location


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


class EvaluateResult(PhaseResult):
    metrics: dict[str, float]
    champion_version: str | None
    champion_test_roc_auc: float | None
    promote: bool
    reason: str


class PackageResult(PhaseResult):
    model_name: str
    model_version: str
    reused_existing_version: bool
    promoted: bool
    champion_version: str | None


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
    # The version that had scored the date when the model was chosen (None: not scored yet).
    version_seen_for_date: str | None
    # Names the plan's staging table (see churn.warehouse.staging_table); new to every plan.
    staging_key: str


class ScoredPartition(Handoff):
    partition: ScoringPartition
    rows_staged: int
    risk_band_counts: dict[str, int]


class ScoreResult(PhaseResult):
    rows_written: int
    table: str
    warehouse: str
    model_version: str
    model_chosen_because: str
    risk_band_counts: dict[str, int]
    partitions: int


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
}

# Phase entry points take upstream results as records or as the JSON dictionaries XCom
# carries, and turn the latter into records before any work starts.
accepts_handoffs = validate_call(config=ConfigDict(arbitrary_types_allowed=True))
