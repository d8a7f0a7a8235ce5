"""Deployment: score every active customer and replace the date's rows.

The model is the one of record for the date: the version that scored the date before (so
a rerun or backfill reproduces it), else the version this run promoted, else the current
champion. The write is one transaction: the date's earlier scores are deleted and the new
ones inserted together, so readers see the old set or the new set, never a mix, and a
rerun of a date never duplicates a row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churn.contract import Contract, load_contract
from churn.errors import PermanentError
from churn.handoffs import FeatureResult, PackageResult, ScoreResult, accepts_handoffs
from churn.manifest import run_phase
from churn.model import model_inputs, sized_thread_pools
from churn.settings import Settings, redact_text, redact_url
from churn.storage import read_parquet_batches
from churn.tracking import ModelUnavailableError, champion_version, load_registered_model, use_mlflow
from churn.warehouse import open_scores_table, replace_scores, scoring_record


class ScoringError(PermanentError, RuntimeError):
    """Scoring cannot go ahead safely; nothing was written. Retrying will not help."""


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
            "customer_id": features[contract.id_column].astype("string"),
            "churn_probability": probabilities.astype("float64"),
            "risk_band": risk_bands(probabilities, bands),
        }
    )


def choose_model(
    settings: Settings, packaged: PackageResult, recorded: str | None, champion: str | None, score_date: date
) -> ModelOfRecord:
    """The version that scores the date: the date's earlier one, else promoted by this run, else the champion.

    Reruns and backfills of a scored date never promote (see evaluate), so they score with
    the version that scored the date before and reproduce its rows.
    """
    name, alias = settings.config.registered_model, settings.config.champion_alias
    if recorded is not None:
        return ModelOfRecord(
            name, recorded, f"it scored {score_date} before, and a rerun or backfill reproduces the date's scores"
        )
    if packaged.promoted:
        return ModelOfRecord(name, packaged.model_version, f"this run promoted it to {alias!r}")
    if champion is None:
        raise ScoringError(
            f"no model carries the alias {alias!r} in {name!r}: no challenger has passed evaluation yet, so "
            "there is nothing safe to score with"
        )
    return ModelOfRecord(name, champion, f"it is the current {alias!r}")


def load_scoring_model(chosen: ModelOfRecord) -> Any:
    """Load the chosen version from the configured registry; refuse anything but a probabilistic classifier."""
    try:
        model = load_registered_model(chosen.name, chosen.version)
    except ModelUnavailableError as error:
        raise ModelUnavailableError(
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
    model: Any, features_path: Path, contract: Contract, bands: dict[str, float], batch_rows: int
) -> Iterator[pd.DataFrame]:
    """Score the feature table one Parquet record batch at a time, in file order.

    The next batch is predicted on a second thread while the caller writes the current one,
    so predicting and writing overlap, and memory holds about two batches, not the table.
    """
    with sized_thread_pools(), ThreadPoolExecutor(max_workers=1) as predictor:
        pending: Future[pd.DataFrame] | None = None
        for batch in read_parquet_batches(features_path, batch_rows):
            upcoming = predictor.submit(score_frame, model, batch, contract, bands)
            if pending is not None:
                yield pending.result()
            pending = upcoming
        if pending is not None:
            yield pending.result()


def score_date_with_model_of_record(
    features: FeatureResult, packaged: PackageResult, settings: Settings
) -> ScoreResult:
    """Score the run's customers with the date's model of record and replace the date's rows."""
    run = features.run
    with open_scores_table(settings) as (engine, table):
        contract = load_contract(run.contract)
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
        model = load_scoring_model(chosen)
        provenance = {
            "model_name": chosen.name,
            "model_version": chosen.version,
            "run_id": run.airflow_run_id,
            "scored_at": datetime.now(UTC),
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
            model, features.scoring_path, contract, settings.config.risk_bands, settings.config.scoring.batch_rows
        )
        written = replace_scores(engine, table, run.score_date, labelled(batches), seen=record)
        warehouse = redact_url(engine.url)
    return ScoreResult(
        run=run,
        rows_written=written,
        table=table.fullname,
        warehouse=warehouse,
        model_version=chosen.version,
        model_chosen_because=chosen.reason,
        risk_band_counts=dict(sorted(band_counts.items())),
    )


@accepts_handoffs
def run_score(features: FeatureResult, packaged: PackageResult, settings: Settings | None = None) -> ScoreResult:
    """Score the run's scoring features with the date's model of record, after packaging decided."""

    def score() -> ScoreResult:
        from churn.airflow_connections import task_settings

        return score_date_with_model_of_record(
            features, packaged, settings or task_settings(warehouse=True, mlflow=True)
        )

    return run_phase("score", features.run, score)
