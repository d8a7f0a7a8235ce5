"""Feature Engineering: derived features as pure functions, shared by training and scoring.

The contract declares which derived features a table gets; the same function builds them
for the training and the scoring snapshot, so the two can never disagree.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from churn.contract import BandFeature, Contract, CountEqualFeature, DerivedFeature, RatioFeature, load_contract
from churn.handoffs import FeatureResult, ValidateResult, accepts_handoffs
from churn.manifest import run_phase
from churn.model import model_columns
from churn.storage import read_parquet_batches, write_parquet_batches_atomically

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

logger = logging.getLogger(__name__)


def band(values: pd.Series, edges: Sequence[float]) -> pd.Series:
    """Label each value with its band, e.g. edges [12, 24] give "<=12", "13-24", ">24"."""
    bounds = [-np.inf, *edges, np.inf]
    labels = [f"<={edges[0]}"]
    labels += [f"{low + 1}-{high}" for low, high in itertools.pairwise(edges)]
    labels.append(f">{edges[-1]}")
    banded = pd.cut(values.astype("float64"), bins=bounds, labels=labels, right=True)
    return banded.astype("string")


def ratio(numerator: pd.Series, denominator: pd.Series, fallback: pd.Series | None = None) -> pd.Series:
    """numerator / denominator, using ``fallback`` where the ratio is undefined (0 or missing)."""
    top = numerator.astype("float64")
    bottom = denominator.astype("float64")
    quotient = top / bottom.where(bottom != 0)
    if fallback is not None:
        quotient = quotient.fillna(fallback.astype("float64"))
    return quotient


def count_equal(frame: pd.DataFrame, columns: Sequence[str], value: str) -> pd.Series:
    """How many of ``columns`` equal ``value`` in each row (e.g. services subscribed)."""
    return frame[list(columns)].eq(value).sum(axis=1).astype("int64")


def derive(frame: pd.DataFrame, feature: DerivedFeature) -> pd.Series:
    match feature:
        case BandFeature():
            return band(frame[feature.column], feature.edges)
        case RatioFeature():
            fallback = frame[feature.fallback] if feature.fallback else None
            return ratio(frame[feature.numerator], frame[feature.denominator], fallback)
        case CountEqualFeature():
            return count_equal(frame, feature.columns, feature.value)


def add_derived_features(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The frame with the contract's derived features appended; the input is left untouched."""
    missing = [c for c in contract.feature_columns if c not in frame]
    if missing:
        raise KeyError(f"cannot build features: columns {missing} are missing")
    return frame.assign(**{feature.name: derive(frame, feature) for feature in contract.derived_features})


def category_values(frame: pd.DataFrame, columns: list[str]) -> dict[str, set[str]]:
    """The distinct non-blank values of each of ``columns``, as text."""
    return {column: set(frame[column].dropna().astype(str)) for column in columns}


def unseen_categories(training: dict[str, set[str]], scoring: dict[str, set[str]]) -> dict[str, list[str]]:
    """Category values the scoring snapshot holds that training never saw, per column.

    Not an error: the model encodes them as unknown and still scores the customer; the
    event is reported so a person can see the population change.
    """
    unseen = {column: sorted(values - training.get(column, set())) for column, values in scoring.items()}
    return {column: values for column, values in unseen.items() if values}


def build_feature_table(
    source: ObjectStoragePath, destination: ObjectStoragePath, contract: Contract
) -> dict[str, set[str]]:
    """Write ``source``'s rows with the contract's derived features to ``destination``, one
    Parquet row group at a time, so memory holds a batch, not the table. Returns the
    category values seen, for comparing training with scoring."""
    _, categorical = model_columns(contract)
    seen: dict[str, set[str]] = {column: set() for column in categorical}

    def featured() -> Iterator[pd.DataFrame]:
        for batch in read_parquet_batches(source):
            frame = add_derived_features(batch, contract)
            for column, values in category_values(frame, categorical).items():
                seen[column] |= values
            yield frame

    write_parquet_batches_atomically(featured(), destination)
    return seen


@accepts_handoffs
def run_feature(validated: ValidateResult) -> FeatureResult:
    """Build the run's training and scoring feature tables from its validated snapshots."""
    run = validated.run

    def build() -> FeatureResult:
        contract = load_contract(run.contract)
        features_dir = run.run_dir / "features"
        training = build_feature_table(validated.training.path, features_dir / "training.parquet", contract)
        scoring = build_feature_table(validated.scoring.path, features_dir / "scoring.parquet", contract)
        unseen = unseen_categories(training, scoring)
        for column, values in unseen.items():
            logger.warning("scoring snapshot has %s values never seen in training: %s", column, values)
        return FeatureResult(
            run=run,
            derived_features=[feature.name for feature in contract.derived_features],
            unseen_categories=unseen,
            training_path=features_dir / "training.parquet",
            scoring_path=features_dir / "scoring.parquet",
        )

    return run_phase("feature", run, build)
