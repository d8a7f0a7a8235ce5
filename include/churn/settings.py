"""Configuration in one place: ``pipeline.yaml`` for behaviour, the environment for places.

Environment variables (all optional; the defaults make an embedded single-machine setup):

``CHURN_HOME``
    Folder that holds all local state: sources, run folders, the SQLite warehouse and the
    local MLflow store. Defaults to ``.churn`` in the project folder.
``CHURN_PIPELINE_CONFIG``
    Path of a ``pipeline.yaml`` to use instead of the bundled one.
``CHURN_RUNS_BASE``
    Where run folders go: a local folder (default ``CHURN_HOME/runs``) or object storage
    through an Airflow Connection, e.g. ``s3://aws_default@my-bucket/churn/runs`` (see
    :mod:`churn.locations`).
``CHURN_SOURCE_ROOTS``
    Folders, besides ``CHURN_HOME/sources``, that file sources may be read from, separated by
    ``os.pathsep`` (``:``); a file elsewhere is refused at ingest.
``CHURN_WAREHOUSE_URL``
    SQLAlchemy URL of the warehouse when no Airflow Connection ``churn_warehouse`` exists.
``MLFLOW_TRACKING_URI``
    MLflow tracking and registry server; defaults to a SQLite store under ``CHURN_HOME``.
``MLFLOW_TRACKING_USERNAME``, ``MLFLOW_TRACKING_PASSWORD``
    Basic-auth login for an MLflow server that requires one (read by MLflow itself).

Inside Airflow, the Connections ``churn_warehouse`` and ``churn_mlflow`` win over these
(see :mod:`churn.airflow_connections`).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import time, timedelta
from functools import cache
from importlib import resources
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    Discriminator,
    Field,
    NonNegativeInt,
    PositiveInt,
    Tag,
    create_model,
    field_validator,
    model_validator,
)

from churn.documents import ConfigurationError, Strict, parse_document
from churn.locations import location

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

PROJECT_DIR = Path(__file__).resolve().parents[2]
# A plain SQL identifier, as the warehouse's names and sql:// sources must be.
IDENTIFIER = r"[A-Za-z_][A-Za-z0-9_]{0,62}"
SQL_IDENTIFIER = re.compile(rf"^{IDENTIFIER}$")
EMAIL_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CONNECTION_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


def validated_identifier(name: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else refuse it."""
    if not isinstance(name, str) or not SQL_IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a valid SQL identifier (letters, digits, underscore)")
    return name


def validated_connection_id(conn_id: str) -> str:
    """Return ``conn_id`` if it is an Airflow Connection id, else refuse it."""
    if not CONNECTION_ID.match(conn_id):
        raise ValueError(f"{conn_id!r} is not an Airflow Connection id (letters, digits, _ . -)")
    return conn_id


class WarehouseConfig(Strict):
    schema_name: str | None = Field(None, alias="schema")  # None: the database's default schema
    table: str = "churn_scores"

    @field_validator("schema_name", "table")
    @classmethod
    def _plain_identifier(cls, name: str | None) -> str | None:
        return None if name is None else validated_identifier(name)


class DatabaseTimeouts(Strict):
    """How long a warehouse or ``sql://`` source session waits, so an outage or a lock another
    session holds fails the task in minutes (a retryable problem) instead of hanging it."""

    # One connection attempt (libpq's connect_timeout): a server that never answers.
    connect_seconds: PositiveInt = 10
    # A lock another session holds (PostgreSQL's lock_timeout; SQLite's wait for the write lock).
    lock_seconds: PositiveInt = 60
    # One statement (PostgreSQL's statement_timeout): the largest is a date's publish without
    # partitions, copying every staged row (57 s for 10,000,000 on SQLite, BENCHMARKS.md).
    statement_seconds: PositiveInt = 1800


# Minutes each task may run before Airflow stops it (its execution_timeout); a stopped task is
# retried like an outage. Sized for 10,000,000 customers on 2 cores (the whole DAG: under 5
# minutes, BENCHMARKS.md), with wide room for slower machines. score: each of its tasks; approve:
# before the request waits (the wait is approvals.response_timeout_hours); scores_due: that DAG's check.
TASK_TIMEOUT_MINUTES = {
    "ingest": 60,
    "validate": 60,
    "feature": 60,
    "train": 120,
    "evaluate": 60,
    "approve": 10,
    "package": 30,
    "score": 120,
    "monitor": 60,
    "scores_due": 10,
}


class SourcesConfig(Strict):
    """Where snapshots may come from. Files: under CHURN_HOME/sources or a folder in
    CHURN_SOURCE_ROOTS (the environment says where things are)."""

    # The Airflow Connections a sql:// source may read through. Never the warehouse's
    # (churn_warehouse): its scores would come back as training data.
    connections: tuple[str, ...] = ("churn_source",)

    @field_validator("connections")
    @classmethod
    def _connection_ids(cls, conn_ids: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(map(validated_connection_id, conn_ids))


class SplitConfig(Strict):
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)]
    seed: int


# The hyperparameters a family takes, with scikit-learn's defaults; "balanced" class weights
# reweigh churners by their rarity.
ClassWeight = Literal["balanced"] | None
# A share of the rows or columns, as the forests take them.
Fraction = Annotated[float, Field(gt=0.0, le=1.0)]


class LogisticRegressionParams(Strict):
    C: Annotated[float, Field(gt=0.0)] = 1.0
    class_weight: ClassWeight = None


class HistGradientBoostingParams(Strict):
    learning_rate: Annotated[float, Field(gt=0.0)] = 0.1
    max_iter: PositiveInt = 100
    max_leaf_nodes: Annotated[int, Field(ge=2)] | None = 31
    max_depth: PositiveInt | None = None
    min_samples_leaf: PositiveInt = 20
    l2_regularization: Annotated[float, Field(ge=0.0)] = 0.0
    class_weight: ClassWeight = None


class ExtraTreesParams(Strict):
    # Scoring costs about n_estimators times max_depth per customer: bound both for large tables.
    n_estimators: PositiveInt = 100
    max_depth: PositiveInt | None = None
    min_samples_leaf: PositiveInt = 1
    # A share of the columns each split considers, or "sqrt"/"log2" of their number.
    max_features: Fraction | Literal["sqrt", "log2"] = "sqrt"
    class_weight: ClassWeight = None


class RandomForestParams(ExtraTreesParams):
    # The share of the rows each tree's bootstrap sample draws; None: as many as there are.
    max_samples: Fraction | None = None


class CandidatesConfig(Strict):
    """The model families to compare, each with its hyperparameters; leave one out to skip it."""

    logistic_regression: LogisticRegressionParams | None = None
    hist_gradient_boosting: HistGradientBoostingParams | None = None
    random_forest: RandomForestParams | None = None
    extra_trees: ExtraTreesParams | None = None

    def configured(self) -> dict[str, Strict]:
        """The configured families and their parameters, simplest first (so it wins a tie)."""
        return {family: params for family, params in self if params is not None}


# Each family's hyperparameters by the name pipeline.yaml gives the family.
FAMILY_PARAMS: dict[str, type[Strict]] = {
    "logistic_regression": LogisticRegressionParams,
    "hist_gradient_boosting": HistGradientBoostingParams,
    "random_forest": RandomForestParams,
    "extra_trees": ExtraTreesParams,
}


class IntegerRange(Strict):
    """Whole numbers from ``low`` to ``high``, both included, each equally likely."""

    low: int
    high: int

    @model_validator(mode="after")
    def _ordered(self) -> IntegerRange:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class RealRange(Strict):
    """Real numbers from ``low`` to ``high``, uniform, or uniform in their logarithm (``log: true``)."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> RealRange:
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"a log range needs low above 0 (got {self.low})")
        return self


def _number_type(annotation: Any) -> Any | None:
    """The int or float a parameter's type allows (with its bounds), or None if it allows neither."""
    arms = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    for arm in arms:
        base = get_args(arm)[0] if get_origin(arm) is Annotated else arm
        if base in (int, float):
            return arm
    return None


def _values_or_range(value: Any) -> str:
    return "range" if isinstance(value, (dict, IntegerRange, RealRange)) else "values"


def search_space_of(params: type[Strict]) -> type[Strict]:
    """The search space a family's parameters allow: for each parameter, a list of values to
    draw from or, for a number, a range; every value and bound is checked as the parameter
    itself checks it, and a parameter the family does not take is refused."""
    fields: dict[str, Any] = {}
    for name, field in params.model_fields.items():
        value = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        values = Annotated[list[value], Field(min_length=1), Tag("values")]
        number = _number_type(value if field.metadata else field.annotation)
        if number is None:
            fields[name] = (values | None, None)
            continue
        whole = (get_args(number)[0] if get_origin(number) is Annotated else number) is int
        bounds = create_model(
            f"{params.__name__.removesuffix('Params')}{name.title().replace('_', '')}Range",
            __base__=IntegerRange if whole else RealRange,
            low=(number, ...),
            high=(number, ...),
        )
        choice = Annotated[values | Annotated[bounds, Tag("range")], Discriminator(_values_or_range)]
        fields[name] = (choice | None, None)
    space = create_model(params.__name__.removesuffix("Params") + "Space", __base__=Strict, **fields)
    space.__doc__ = f"The values a search draws from for each of {params.__name__}'s parameters."
    return space


LogisticRegressionSpace = search_space_of(LogisticRegressionParams)
HistGradientBoostingSpace = search_space_of(HistGradientBoostingParams)
RandomForestSpace = search_space_of(RandomForestParams)
ExtraTreesSpace = search_space_of(ExtraTreesParams)


class SearchSpacesConfig(Strict):
    """Each family's search space; a parameter left out keeps its configured value."""

    logistic_regression: LogisticRegressionSpace | None = None
    hist_gradient_boosting: HistGradientBoostingSpace | None = None
    random_forest: RandomForestSpace | None = None
    extra_trees: ExtraTreesSpace | None = None

    def configured(self) -> dict[str, Strict]:
        """The families that have a search space with at least one parameter in it."""
        return {
            family: space for family, space in self if space is not None and space.model_dump(exclude_none=True)
        }


class SearchConfig(Strict):
    """A successive-halving random search of each family's space, all within one time budget."""

    # Seconds model selection may take: the cross-validation of every family's configured
    # values (always done) and the searches, each sized to its share of what remains.
    time_budget_seconds: Annotated[float, Field(gt=0.0)]
    # Configurations a family's search starts from at most (fewer when the budget is short).
    max_candidates: Annotated[int, Field(ge=3)] = 27
    spaces: SearchSpacesConfig = SearchSpacesConfig()


class TrainingConfig(Strict):
    cv_folds: Annotated[int, Field(ge=2)]
    seed: int
    # Above this many training rows, the model learns from a stratified sample of this size
    # (recorded in the model card): past it, more rows cost time and memory, not accuracy.
    max_rows: PositiveInt = 500_000
    calibration: Literal["sigmoid", "isotonic"]
    candidates: CandidatesConfig
    # None: compare the families' configured values only, without a search.
    search: SearchConfig | None = None

    @field_validator("candidates")
    @classmethod
    def _at_least_one(cls, candidates: CandidatesConfig) -> CandidatesConfig:
        if not candidates.configured():
            raise ValueError("configure at least one model family")
        return candidates

    @model_validator(mode="after")
    def _spaces_of_configured_families(self) -> TrainingConfig:
        if self.search is not None:
            for family, space in self.search.spaces:
                if space is not None and family not in self.candidates.configured():
                    raise ValueError(
                        f"training.search.spaces.{family}: a search space for a family training.candidates "
                        "does not configure"
                    )
        return self


class QualityGates(Strict):
    min_test_roc_auc: Probability
    operating_threshold: Probability
    # A comparison with the champion counts only on test rows it never trained on, and only
    # with this many churned and retained customers among them: fewer, and the champion stays
    # (a test split with fewer promotes nothing, a first model included).
    min_comparison_positives: PositiveInt = 30
    min_comparison_negatives: PositiveInt = 30


class ScoringConfig(Strict):
    # Customers scored and written per batch: memory holds about two batches, not the table.
    batch_rows: PositiveInt = 100_000
    # Customers per scoring partition, one mapped task instance each: partitions run side by
    # side on the executor's workers.
    partition_rows: PositiveInt = 1_000_000


class ScoreDateWindow(Strict):
    """The score dates a run may be for, around the day Airflow queued it for (its run_after);
    the run parameter allow_any_score_date lifts it. A mistyped year (2999-12-31) would
    otherwise be scored, and no run for a date before it could promote again."""

    days_back: NonNegativeInt = 400
    days_ahead: NonNegativeInt = 7


class ShrinkGuardConfig(Strict):
    """How much smaller than the warehouse's scores a scoring snapshot may be before validate
    refuses it (the run parameter allow_shrink lets it through): a truncated export would
    otherwise replace a whole day of scores without a word."""

    # A drop of more than this fraction is refused; 1.0 refuses nothing.
    max_drop_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.2


class ValidationConfig(Strict):
    # Rows validated at a time: memory holds one chunk (and the id column), not the snapshot.
    chunk_rows: PositiveInt = 200_000


class AlertRoute(Strict):
    """Where one role is reached. E-mail addresses are not secrets and live here; a webhook's
    URL often carries a token, so it lives in an Airflow HTTP Connection named here."""

    email: tuple[str, ...] = ()
    webhook_conn_id: str | None = None
    # A page a person opens to reach the role (a chat channel, a team page): the DAG's owner
    # link when the role has no e-mail address. Never a URL with a token in it.
    page: str | None = None

    @field_validator("email")
    @classmethod
    def _addresses(cls, addresses: tuple[str, ...]) -> tuple[str, ...]:
        for address in addresses:
            if not EMAIL_ADDRESS.match(address):
                raise ValueError(f"{address!r} is not an e-mail address")
        return addresses

    @field_validator("webhook_conn_id")
    @classmethod
    def _connection_id(cls, conn_id: str | None) -> str | None:
        return None if conn_id is None else validated_connection_id(conn_id)

    @field_validator("page")
    @classmethod
    def _a_web_page(cls, page: str | None) -> str | None:
        if page is not None and (not re.match(r"^https?://[^\s/]+", page) or "@" in page.split("/")[2]):
            raise ValueError(f"{page!r} is not an http(s) URL without a login")
        return page

    @model_validator(mode="after")
    def _reachable(self) -> AlertRoute:
        if not self.email and not self.page:
            raise ValueError("a route needs an e-mail address or a page, which the DAG's owner links open")
        return self


class AlertsConfig(Strict):
    """Incident response: who is told of a failed task or a missed deadline, and where."""

    # The warehouse table every alert is recorded in (besides <CHURN_HOME>/alerts/alerts.jsonl).
    table: str = "churn_alerts"
    # The time of day (UTC) by which the score date's scores must be written.
    scores_due: time = time(6, 0)
    # Lines of the error an alert quotes.
    error_lines: PositiveInt = 12
    # The Airflow SMTP Connection that sends e-mail routes; without it, e-mail is not sent.
    smtp_conn_id: str = "smtp_default"
    # Role (as raci.yaml names it) to where it is reached.
    routes: dict[str, AlertRoute] = Field(default_factory=dict)

    @field_validator("table")
    @classmethod
    def _plain_identifier(cls, name: str) -> str:
        return validated_identifier(name)

    @field_validator("scores_due", mode="before")
    @classmethod
    def _hours_and_minutes(cls, value: Any) -> Any:
        # Unquoted, YAML reads 6:00 as the number 360, which would pass as seconds.
        if not isinstance(value, time) and not (isinstance(value, str) and re.fullmatch(r"\d\d:\d\d", value)):
            raise ValueError('a time of day in quotes, HH:MM (UTC), e.g. "06:00"')
        return value

    @field_validator("routes")
    @classmethod
    def _known_roles(cls, routes: dict[str, AlertRoute]) -> dict[str, AlertRoute]:
        from churn.raci import load_matrix

        unknown = sorted(set(routes) - set(load_matrix().roles))
        if unknown:
            raise ValueError(f"routes for roles raci.yaml does not name: {unknown}")
        return routes


class ApprovalsConfig(Strict):
    """When a promotion waits for a person's approval in the Airflow UI, for how long, and who
    may give it."""

    # A challenger whose test ROC AUC differs from the champion's by more than this (either
    # way) is promoted only once approved; so is any challenger of a drift-triggered run.
    max_unapproved_auc_change: Probability = 0.02
    # Hours the request waits for an answer; unanswered, it counts as rejected.
    response_timeout_hours: Annotated[float, Field(gt=0.0)] = 12.0
    # Role (as raci.yaml names it) to the Airflow users who answer for it: the users the
    # request is assigned to when the role is the Accountable one of the phase that asks.
    users: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("users")
    @classmethod
    def _known_roles_with_users(cls, users: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        from churn.raci import load_matrix

        unknown = sorted(set(users) - set(load_matrix().roles))
        if unknown:
            raise ValueError(f"users for roles raci.yaml does not name: {unknown}")
        empty = sorted(role for role, names in users.items() if not names)
        if empty:
            raise ValueError(f"roles with no user to approve for them: {empty}")
        return users


class DriftThresholds(Strict):
    """Population stability index above which a date counts as drifted, and retraining is requested."""

    # On any single model input: 0.25 is the usual "significant shift" mark.
    feature_psi: Annotated[float, Field(gt=0.0)] = 0.25
    # On the churn probabilities: a smaller move there already changes who is contacted.
    prediction_psi: Annotated[float, Field(gt=0.0)] = 0.1


class MonitoringConfig(Strict):
    table: str = "churn_monitoring"
    # Numeric inputs and probabilities are binned on this many quantiles of the reference.
    bins: Annotated[int, Field(ge=2)] = 10
    # Training rows the model scores for the reference predictions (a seeded sample above this).
    reference_sample_rows: PositiveInt = 50_000
    seed: int = 20261129
    # How far back a labelled customer's earlier score may be, for the realised ROC AUC.
    realised_auc_lookback_days: PositiveInt = 90
    drift_thresholds: DriftThresholds = DriftThresholds()
    # Fewer scored customers than this are measured and reported but never request retraining:
    # PSI's sampling noise grows as rows shrink (a 1-row rerun read above 8 on most inputs).
    min_rows_to_judge: PositiveInt = 500

    @field_validator("table")
    @classmethod
    def _plain_identifier(cls, name: str) -> str:
        return validated_identifier(name)


class PipelineConfig(Strict):
    """``pipeline.yaml``: what the pipeline does, never where things are or their secrets."""

    experiment_name: str
    registered_model: str
    champion_alias: str
    default_contract: str
    warehouse: WarehouseConfig
    database_timeouts: DatabaseTimeouts = DatabaseTimeouts()
    # A task left out keeps its default (TASK_TIMEOUT_MINUTES).
    task_timeouts_minutes: dict[str, PositiveInt] = Field(default_factory=dict)
    sources: SourcesConfig = SourcesConfig()
    split: SplitConfig
    training: TrainingConfig
    quality_gates: QualityGates
    scoring: ScoringConfig = ScoringConfig()
    score_date_window: ScoreDateWindow = ScoreDateWindow()
    shrink_guard: ShrinkGuardConfig = ShrinkGuardConfig()
    validation: ValidationConfig = ValidationConfig()
    monitoring: MonitoringConfig = MonitoringConfig()
    alerts: AlertsConfig = AlertsConfig()
    approvals: ApprovalsConfig = ApprovalsConfig()
    risk_bands: dict[str, float]

    @field_validator("task_timeouts_minutes")
    @classmethod
    def _known_tasks(cls, minutes: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(minutes) - set(TASK_TIMEOUT_MINUTES))
        if unknown:
            raise ValueError(
                f"time-outs for tasks the DAGs do not have: {unknown}; known: {list(TASK_TIMEOUT_MINUTES)}"
            )
        return minutes

    def task_timeout(self, phase: str) -> timedelta:
        """How long a task of ``phase`` may run (its Airflow execution_timeout)."""
        return timedelta(minutes=self.task_timeouts_minutes.get(phase, TASK_TIMEOUT_MINUTES[phase]))

    @field_validator("risk_bands")
    @classmethod
    def _bands_cover_probabilities(cls, bands: dict[str, float]) -> dict[str, float]:
        edges = list(bands.values())
        if not edges or edges != sorted(edges) or edges[-1] < 1.0:
            raise ValueError("risk band upper bounds must increase and the last must be 1.0 or above")
        return bands

    def in_band_order(self, counts: Mapping[str, int]) -> dict[str, int]:
        """``counts`` per risk band from the lowest band to the highest, empty bands left out;
        bands this configuration does not name (rows scored under an earlier one) come last."""
        ordered = {band: counts[band] for band in self.risk_bands if counts.get(band)}
        return {**ordered, **{band: count for band, count in counts.items() if band not in self.risk_bands}}


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    warehouse_url: str
    mlflow_tracking_uri: str
    mlflow_artifact_root: Path
    config: PipelineConfig
    # Basic-auth credentials for the MLflow server, from the churn_mlflow Connection.
    mlflow_username: str | None = None
    mlflow_password: str | None = None
    # Base of the run folders, a local folder or an object-storage URL; None: CHURN_HOME/runs.
    runs_base: str | None = None
    # The Airflow Connection warehouse_url came from, to name in a refused login; None: the environment.
    warehouse_conn_id: str | None = None
    # Folders besides sources_dir that file sources may be read from (CHURN_SOURCE_ROOTS).
    extra_source_roots: tuple[Path, ...] = ()

    def __repr__(self) -> str:
        # URLs and the MLflow login may carry passwords; a logged Settings must not.
        return (
            f"Settings(state_dir={str(self.state_dir)!r}, warehouse_url={redact_url(self.warehouse_url)!r}, "
            f"mlflow_tracking_uri={redact_url(self.mlflow_tracking_uri)!r})"
        )

    @property
    def sources_dir(self) -> Path:
        return self.state_dir / "sources"

    @property
    def runs_dir(self) -> ObjectStoragePath:
        return location(self.runs_base or self.state_dir / "runs")

    @property
    def source_roots(self) -> tuple[Path, ...]:
        """The folders file sources may be read from, symbolic links resolved."""
        return tuple(root.resolve() for root in (self.sources_dir, *self.extra_source_roots))

    @property
    def default_training_source(self) -> Path:
        return self.sources_dir / "training.csv"

    @property
    def default_scoring_source(self) -> Path:
        return self.sources_dir / "scoring.csv"

    def overridden(self, **values: Any) -> Settings:
        """These settings with the given values replaced; None leaves a value as it is."""
        return replace(self, **{key: value for key, value in values.items() if value is not None})

    def run_dir(self, score_date: str, run_id: str) -> ObjectStoragePath:
        """Folder for one pipeline run's files, partitioned by score date then run."""
        return self.runs_dir / f"score_date={score_date}" / f"run_id={safe_path_part(run_id)}"


# Reports a run folder holds, as a folder and its page: the Great Expectations Data Docs that
# validate writes and the report that monitor writes; the roles page serves both from there.
DATA_DOCS_FOLDER, DATA_DOCS_INDEX = "data_docs", "index.html"
MONITORING_REPORT_FOLDER, MONITORING_REPORT_INDEX = "monitoring", "report.html"


def safe_path_part(text: str) -> str:
    """Make an Airflow run id safe as a single folder name on any filesystem."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


@cache
def pipeline_config(path: str | None = None) -> PipelineConfig:
    """The pipeline configuration: the file at ``path``, else the bundled ``pipeline.yaml``."""
    if path is None:
        bundled = resources.files("churn").joinpath("pipeline.yaml")
        return parse_document(PipelineConfig, bundled.read_text(encoding="utf-8"), str(bundled))
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(f"pipeline configuration {path} cannot be read: {error}") from error
    return parse_document(PipelineConfig, text, path)


def task_timeout(phase: str) -> timedelta:
    """How long a task of ``phase`` may run (its Airflow execution_timeout), as configured."""
    return load_settings().config.task_timeout(phase)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, falling back to the embedded single-machine layout."""
    environ = os.environ if environ is None else environ
    state_dir = Path(environ.get("CHURN_HOME") or PROJECT_DIR / ".churn").expanduser().resolve()
    return Settings(
        state_dir=state_dir,
        warehouse_url=environ.get("CHURN_WAREHOUSE_URL") or f"sqlite:///{state_dir / 'warehouse.db'}",
        mlflow_tracking_uri=environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{state_dir / 'mlflow' / 'mlflow.db'}",
        mlflow_artifact_root=state_dir / "mlflow" / "artifacts",
        config=pipeline_config(environ.get("CHURN_PIPELINE_CONFIG") or None),
        runs_base=environ.get("CHURN_RUNS_BASE") or None,
        extra_source_roots=tuple(
            Path(folder).expanduser()
            for folder in (environ.get("CHURN_SOURCE_ROOTS") or "").split(os.pathsep)
            if folder
        ),
    )


def redact_url(url: Any) -> str:
    """A database or server URL safe for logs, manifests and messages: no password, also
    none passed as a query parameter (libpq's ``sslpassword``)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(str(url))
    except ArgumentError:
        return redact_text(str(url))
    hidden = {key: "***" for key in parsed.query if "password" in key.lower()}
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True)


# ``scheme://user:`` of a URL with a password, found in time linear in the text: a scheme is
# tried only from the start of its run of scheme characters, and nothing is given back once
# matched (possessive), so a megabyte of letters is read once, not once per letter.
_URL_LOGIN = re.compile(r"(?<![\w+.-])[+.-]*+(\w[\w+.-]*+://[^:/@\s]++:)")
_PASSWORD_END = re.compile(r"[@\s]")
_PASSWORD_PARAMETER = re.compile(r"(password=)[^&\s]*+", flags=re.IGNORECASE)


def redact_text(text: str) -> str:
    """Text with any ``scheme://user:password@`` credentials, and any ``...password=`` URL
    parameter, masked, in time linear in the text's length (a message may quote a huge cell)."""
    kept, done, password_end = [], 0, None
    for login in _URL_LOGIN.finditer(text):
        if login.start(1) < done:  # inside a password masked already
            continue
        # The password runs to the next "@" (masked) or whitespace (no password): where that
        # is, is searched again only past it, so the text is read once however many logins.
        if password_end is None or password_end.start() < login.end():
            password_end = _PASSWORD_END.search(text, login.end())
        if password_end is None:
            break
        if password_end.group() == "@":
            kept += [text[done : login.end()], "***@"]
            done = password_end.end()
    kept.append(text[done:])
    return _PASSWORD_PARAMETER.sub(r"\1***", "".join(kept))


def code_version() -> str:
    """The git commit of the code that runs, or the package version outside a checkout."""
    from churn import __version__

    if os.environ.get("CHURN_CODE_VERSION"):
        return os.environ["CHURN_CODE_VERSION"]
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"
