"""Deployment: score every active customer and replace the date's rows.

The model is the one of record for the date: the version this run promoted, else the
version that scored the date before (so a rerun or backfill, which never promotes,
reproduces it), else the current champion. The phase runs in three steps: a plan chooses
the model and splits the scoring features into partitions; each partition is scored and
staged by its own task (Airflow maps one task instance per partition, so the executor's
workers share them), replacing only its own staged rows when retried; publishing swaps the
date's rows for the staged ones in one short transaction, so readers see the old set or
the new set, never a mix, and a rerun of a date never duplicates a row.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churn.contract import Contract, load_contract
from churn.errors import PermanentError
from churn.handoffs import (
    FeatureResult,
    PackageResult,
    ScoredPartition,
    ScoreResult,
    ScoringPartition,
    accepts_handoffs,
)
from churn.manifest import run_phase
from churn.model import model_inputs, sized_thread_pools
from churn.settings import Settings, redact_text, redact_url
from churn.storage import parquet_rows, read_parquet_row_range
from churn.tracking import (
    ModelIdentity,
    ModelUnavailableError,
    champion_version,
    check_champion_unchanged,
    load_registered_model,
    model_identity,
    move_champion,
    use_mlflow,
)
from churn.warehouse import (
    ScoringRecord,
    open_scores_table,
    prepare_staging,
    publish_staged,
    scoring_record,
    stage_partition,
    staging_table,
)

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


class ScoringError(PermanentError, RuntimeError):
    """Scoring cannot go ahead safely; nothing was written. Retrying will not help."""


class RegistryReplacedError(ScoringError):
    """The version that scored a date now names another model: the registry was lost or rebuilt."""


@dataclass(frozen=True)
class ModelOfRecord:
    """The registered model version that scores a date, and why it is that one."""

    name: str
    version: str
    reason: str


def risk_bands(probabilities: pd.Series, upper_bounds: dict[str, float]) -> pd.Series:
    """Name each probability's band; ``upper_bounds`` maps band name to its inclusive upper edge
    (increasing and reaching 1.0, as the configuration guarantees)."""
    names = list(upper_bounds)
    edges = [upper_bounds[name] for name in names]
    positions = np.searchsorted(edges, probabilities.to_numpy(dtype=float), side="left")
    return pd.Series(np.asarray(names, dtype=object)[positions], index=probabilities.index, dtype="string")


def score_frame(model: Any, features: pd.DataFrame, contract: Contract, bands: dict[str, float]) -> pd.DataFrame:
    """Customer id, churn probability and risk band for every row of the feature table."""
    probabilities = pd.Series(model.predict_proba(model_inputs(features, contract))[:, 1], index=features.index)
    if probabilities.isna().any() or not probabilities.between(0.0, 1.0).all():
        raise ScoringError("the model returned probabilities outside [0, 1]; refusing to write them")
    return pd.DataFrame(
        {
            "customer_id": contract.customer_ids(features),
            "churn_probability": probabilities.astype("float64"),
            "risk_band": risk_bands(probabilities, bands),
        }
    )


def choose_model(
    settings: Settings,
    packaged: PackageResult | None,
    recorded: str | None,
    champion: str | None,
    score_date: date,
) -> ModelOfRecord:
    """The version that scores the date: promoted by this run, else the date's earlier one, else the champion.

    Reruns and backfills of a scored date never promote (see evaluate; they skip packaging,
    so ``packaged`` is None), so they score with the version that scored the date before and
    reproduce its rows. Only a retraining run that drift on the date started may promote for
    a scored date; it scores the date again with the model it promoted.
    """
    name, alias = settings.config.registered_model, settings.config.champion_alias
    if packaged is not None and packaged.promoted:
        return ModelOfRecord(name, packaged.model_version, f"this run promoted it to {alias!r}")
    if recorded is not None:
        return ModelOfRecord(
            name, recorded, f"it scored {score_date} before, and a rerun or backfill reproduces the date's scores"
        )
    if champion is None:
        raise ScoringError(
            f"no model carries the alias {alias!r} in {name!r}: no challenger has passed evaluation yet, so "
            "there is nothing safe to score with"
        )
    return ModelOfRecord(name, champion, f"it is the current {alias!r}")


def replaced_model(
    record: ScoringRecord, chosen: ModelOfRecord, registered: ModelIdentity, score_date: date, table: str
) -> str | None:
    """Why ``chosen`` (the version that scored ``score_date`` before) is not the model whose
    scores ``record`` holds: the registry's ``registered`` identity for that version differs
    from the one the date's rows recorded. None when they agree, or the rows predate the record."""
    written = (record.model_run_id_for_date, record.training_fingerprint_for_date)
    if chosen.version != record.version_for_date or written == (None, None):
        return None
    if written == (registered.run_id, registered.training_fingerprint):
        return None
    return (
        f"version {chosen.version} of {chosen.name} is now run {registered.run_id} (training fingerprint "
        f"{registered.training_fingerprint}), but the scores of {score_date} were written by run {written[0]} "
        f"(training fingerprint {written[1]}): the registry was replaced, and its version {chosen.version} is "
        f"another model. Nothing was scored and the date's rows are unchanged. Restore the MLflow store that "
        f"scored the date to reproduce them, or, to score the date with the current champion instead, remove "
        f"its rows of {table} with `make forget-date DATE={score_date}` and run the date again"
    )


def load_scoring_model(chosen: ModelOfRecord) -> Any:
    """Load the chosen version from the configured registry; refuse anything but a probabilistic classifier."""
    try:
        model = load_registered_model(chosen.name, chosen.version)
    except ModelUnavailableError as error:
        raise type(error)(  # as damaged, or as unavailable, as the registry found it
            f"{error}. It was chosen because {chosen.reason}; nothing was scored, and no other model is "
            "used in its place (to score a date with the current champion instead, delete the date's rows)"
        ) from error
    if not hasattr(model, "predict_proba"):
        raise ScoringError(
            f"{chosen.name!r} version {chosen.version} is not a probabilistic classifier; refusing to score "
            "with it"
        )
    return model


def scored_batches(
    model: Any,
    features_path: ObjectStoragePath,
    contract: Contract,
    bands: dict[str, float],
    batch_rows: int,
    rows: tuple[int, int] | None = None,
) -> Iterator[pd.DataFrame]:
    """Score the feature table (its ``rows``, first to end exclusive, if given) one record batch
    at a time, in file order.

    The next batch is predicted on a second thread while the caller writes the current one,
    so predicting and writing overlap, and memory holds about two batches, not the table.
    """
    with sized_thread_pools(), ThreadPoolExecutor(max_workers=1) as predictor:
        pending: Future[pd.DataFrame] | None = None
        first, end = rows or (0, parquet_rows(features_path))
        for batch in read_parquet_row_range(features_path, first, end, batch_rows):
            upcoming = predictor.submit(score_frame, model, batch, contract, bands)
            if pending is not None:
                yield pending.result()
            pending = upcoming
        if pending is not None:
            yield pending.result()


def partition_bounds(rows: int, partition_rows: int) -> list[tuple[int, int]]:
    """Split ``rows`` into as few near-equal ranges of at most ``partition_rows`` as possible
    (one empty range when there are no rows, so the date is still published)."""
    count = max(1, -(-rows // partition_rows))
    edges = [rows * index // count for index in range(count + 1)]
    return list(itertools.pairwise(edges))


def plan_scoring(
    features: FeatureResult, packaged: PackageResult | None, settings: Settings
) -> list[ScoringPartition]:
    """Choose the date's model of record, prepare the run's staging table and split the
    scoring features into partitions, each one task's work (``packaged`` is None when the run
    skipped packaging, as a run that cannot promote does)."""
    run = features.run
    with open_scores_table(settings) as (engine, table):
        record = scoring_record(engine, table, run.score_date, settings.config.registered_model)
        try:
            use_mlflow(settings)
            champion = champion_version(settings)
        except Exception as error:  # MLflow raises MlflowException or requests' errors here
            raise ModelUnavailableError(
                f"the MLflow registry at {redact_url(settings.mlflow_tracking_uri)} cannot be reached; "
                f"nothing was scored: {redact_text(str(error))}"
            ) from error
        chosen = choose_model(
            settings,
            packaged,
            record.version_for_date,
            str(champion.version) if champion else None,
            run.score_date,
        )
        load_scoring_model(chosen)  # refuse an unusable model before any partition starts
        promoting = packaged is not None and packaged.promoted
        identity = model_identity(chosen.name, chosen.version)
        replaced = replaced_model(record, chosen, identity, run.score_date, table.fullname)
        if replaced:
            raise RegistryReplacedError(replaced)
        # A key new to every plan: clearing a published run must never reuse (and so drop) its
        # staging table, which on PostgreSQL is now the date's live partition.
        staging_key = uuid.uuid4().hex
        prepare_staging(engine, table, run.score_date, staging_key)
    bounds = partition_bounds(parquet_rows(features.scoring_path), settings.config.scoring.partition_rows)
    return [
        ScoringPartition(
            run=run,
            index=index,
            partitions=len(bounds),
            first_row=first,
            end_row=end,
            features_path=features.scoring_path,
            model_name=chosen.name,
            model_version=chosen.version,
            model_chosen_because=chosen.reason,
            model_run_id=identity.run_id,
            training_fingerprint=identity.training_fingerprint,
            version_seen_for_date=record.version_for_date,
            staging_key=staging_key,
            promotes=promoting,
            compared_champion=packaged.compared_champion if promoting else None,
        )
        for index, (first, end) in enumerate(bounds)
    ]


def score_partition(partition: ScoringPartition, settings: Settings) -> ScoredPartition:
    """Score one partition's customers and stage them, replacing what an earlier attempt at
    the same partition staged."""
    run = partition.run
    chosen = ModelOfRecord(partition.model_name, partition.model_version, partition.model_chosen_because)
    use_mlflow(settings)
    model = load_scoring_model(chosen)
    contract = load_contract(run.contract)
    provenance = {
        "model_name": chosen.name,
        "model_version": chosen.version,
        "run_id": run.airflow_run_id,
        "scored_at": datetime.now(UTC),
        "model_run_id": partition.model_run_id,
        "training_fingerprint": partition.training_fingerprint,
    }
    band_counts: Counter[str] = Counter()

    def labelled(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        try:
            for batch in batches:
                band_counts.update(batch["risk_band"].value_counts().to_dict())
                yield batch.assign(**provenance)
        except (KeyError, ValueError, TypeError) as error:  # inputs the model was not made for
            raise ScoringError(
                f"{chosen.name!r} version {chosen.version} (chosen because {chosen.reason}) cannot score "
                f"this run's features; was it trained under another data contract? {error}"
            ) from error

    batches = scored_batches(
        model,
        partition.features_path,
        contract,
        settings.config.risk_bands,
        settings.config.scoring.batch_rows,
        rows=(partition.first_row, partition.end_row),
    )
    with open_scores_table(settings) as (engine, table):
        staging = staging_table(table, run.score_date, partition.staging_key)
        staged = stage_partition(engine, staging, run.score_date, partition.index, labelled(batches))
    return ScoredPartition(
        partition=partition, rows_staged=staged, risk_band_counts=settings.config.in_band_order(band_counts)
    )


def publish_scores(scored: list[ScoredPartition], settings: Settings) -> ScoreResult:
    """Make every partition's staged rows the date's scores, in one short transaction; then,
    if this run promotes the version, move the champion alias to it.

    The alias is checked before the rows are published (another run may have moved it since
    evaluation) and moved after: a failure in between leaves the date scored and the alias
    where it was, and a retry publishes nothing twice and moves the alias then.
    """
    plan = scored[0].partition
    run = plan.run
    indexes = sorted(part.partition.index for part in scored)
    if indexes != list(range(plan.partitions)) or {part.partition.staging_key for part in scored} != {
        plan.staging_key
    }:
        raise ScoringError(
            f"publishing needs each of the {plan.partitions} partitions of one scoring plan exactly once; got "
            f"partitions {indexes}; nothing was published"
        )
    alias = settings.config.champion_alias
    if plan.promotes:
        use_mlflow(settings)
        check_champion_unchanged(plan.model_name, alias, plan.compared_champion, plan.model_version)
    with open_scores_table(settings) as (engine, table):
        written = publish_staged(
            engine,
            table,
            staging_table(table, run.score_date, plan.staging_key),
            run.score_date,
            {part.partition.index: part.rows_staged for part in scored},
            seen=ScoringRecord(plan.version_seen_for_date, None),
            model=(plan.model_name, plan.model_version),
            run_id=run.airflow_run_id,
        )
        warehouse = redact_url(engine.url)
        table_name = table.fullname
    if plan.promotes:
        move_champion(
            plan.model_name, alias, plan.model_version, score_date=run.score_date, compared=plan.compared_champion
        )
    band_counts = sum((Counter(part.risk_band_counts) for part in scored), Counter())
    return ScoreResult(
        run=run,
        rows_written=written,
        table=table_name,
        warehouse=warehouse,
        model_version=plan.model_version,
        model_chosen_because=plan.model_chosen_because,
        risk_band_counts=settings.config.in_band_order(band_counts),
        partitions=plan.partitions,
        promoted=plan.promotes,
    )


def _task_settings() -> Settings:
    from churn.airflow_connections import task_settings

    return task_settings(warehouse=True, mlflow=True)


@accepts_handoffs
def run_score_plan(
    features: FeatureResult, packaged: PackageResult | None, settings: Settings | None = None
) -> list[ScoringPartition]:
    """Start the score phase: choose the date's model of record and split the work into partitions."""
    return run_phase(
        "score",
        features.run,
        lambda: plan_scoring(features, packaged, settings or _task_settings()),
        finishes=False,
    )


@accepts_handoffs
def run_score_partition(partition: ScoringPartition, settings: Settings | None = None) -> ScoredPartition:
    """Score and stage one partition; as often as Airflow retries it, its rows are staged once."""
    return run_phase(
        "score",
        partition.run,
        lambda: score_partition(partition, settings or _task_settings()),
        starts=False,
        finishes=False,
    )


@accepts_handoffs
def run_score_publish(scored: list[ScoredPartition], settings: Settings | None = None) -> ScoreResult:
    """Finish the score phase: publish the staged partitions as the date's scores, and move
    the champion alias to a version this run promoted."""
    return run_phase(
        "score",
        scored[0].partition.run,
        lambda: publish_scores(scored, settings or _task_settings()),
        starts=False,
    )


@accepts_handoffs
def run_score(
    features: FeatureResult, packaged: PackageResult | None, settings: Settings | None = None
) -> ScoreResult:
    """The whole score phase in this process: plan, every partition in turn, publish.

    The DAG runs the same three steps as separate tasks, the partitions side by side.
    """
    partitions = run_score_plan(features, packaged, settings)
    return run_score_publish([run_score_partition(partition, settings) for partition in partitions], settings)
