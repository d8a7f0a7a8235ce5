"""The model's inputs and the candidate model families, shared by train, evaluate and score.

Each candidate is one scikit-learn Pipeline holding its preprocessing, so the model that is
scored later carries exactly the transformations it was trained with.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import ExtraTreesClassifier, HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from churn.contract import Contract
from churn.documents import Strict
from churn.settings import (
    CandidatesConfig,
    ExtraTreesParams,
    HistGradientBoostingParams,
    LogisticRegressionParams,
    RandomForestParams,
)


@contextmanager
def sized_thread_pools() -> Iterator[None]:
    """Thread pools sized to the worker for fitting and predicting.

    BLAS runs on one thread: the model's matrices are small, and BLAS threads beside
    scikit-learn's own work only fight over the cores (limiting them took the training
    phase from 7.0 s to 2.3 s on 20,000 customers and 2 cores). OpenMP, which histogram
    gradient boosting parallelises over, gets the cores this process may use, not the
    machine's count, which is what a Celery or Kubernetes worker's limits change.
    """
    with (
        threadpool_limits(limits=1, user_api="blas"),
        threadpool_limits(limits=len(os.sched_getaffinity(0)), user_api="openmp"),
    ):
        yield


def model_columns(contract: Contract) -> tuple[list[str], list[str]]:
    """(numeric, categorical) input columns of the model: contract features as each is
    modelled (see ``model_as``), plus derived features."""
    numeric = [c for c in contract.feature_columns if contract.columns[c].modelled_as == "numeric"]
    categorical = [c for c in contract.feature_columns if contract.columns[c].modelled_as == "categorical"]
    for feature in contract.derived_features:
        (categorical if feature.kind == "band" else numeric).append(feature.name)
    return numeric, categorical


def model_inputs(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The model's input columns with plain dtypes: float numbers (booleans as 0 and 1), and
    categories as text objects (a coded number modelled as a category by its digits)."""
    numeric, categorical = model_columns(contract)
    inputs = pd.DataFrame(index=frame.index)
    for column in numeric:
        inputs[column] = frame[column].to_numpy(dtype="float64", na_value=np.nan)
    for column in categorical:
        text = frame[column].astype("string")
        inputs[column] = text.astype(object).where(text.notna(), np.nan)
    return inputs


def label_vector(frame: pd.DataFrame, contract: Contract) -> np.ndarray:
    """1 for a churner (a positive label, see :meth:`Contract.is_positive`), 0 otherwise."""
    return contract.is_positive(frame[contract.label_column]).astype(int)


def logistic_regression_pipeline(
    numeric: list[str], categorical: list[str], params: LogisticRegressionParams, seed: int
) -> Pipeline:
    """Regularised logistic regression on scaled numbers and one-hot categories."""
    numbers = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categories = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    preprocess = ColumnTransformer([("numeric", numbers, numeric), ("categorical", categories, categorical)])
    model = LogisticRegression(max_iter=2000, random_state=seed, **params.model_dump())
    return Pipeline([("preprocess", preprocess), ("model", model)])


def ordinal_categories(numeric: list[str], categorical: list[str]) -> ColumnTransformer:
    """Numbers as they are and categories as codes, for the tree families: trees split on
    both natively, and a missing value or a category unseen in training becomes NaN."""
    categories = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
    )
    return ColumnTransformer([("numeric", "passthrough", numeric), ("categorical", categories, categorical)])


def hist_gradient_boosting_pipeline(
    numeric: list[str], categorical: list[str], params: HistGradientBoostingParams, seed: int
) -> Pipeline:
    """Histogram gradient boosting with native categorical splits; unseen categories count as missing."""
    model = HistGradientBoostingClassifier(
        categorical_features=[False] * len(numeric) + [True] * len(categorical),
        random_state=seed,
        **params.model_dump(),
    )
    return Pipeline([("preprocess", ordinal_categories(numeric, categorical)), ("model", model)])


def random_forest_pipeline(
    numeric: list[str], categorical: list[str], params: RandomForestParams, seed: int
) -> Pipeline:
    """A random forest: bootstrapped trees on coded categories, missing values split natively.

    Its trees grow and predict on every core the process may use (``n_jobs=-1``).
    """
    model = RandomForestClassifier(n_jobs=-1, random_state=seed, **params.model_dump())
    return Pipeline([("preprocess", ordinal_categories(numeric, categorical)), ("model", model)])


def extra_trees_pipeline(
    numeric: list[str], categorical: list[str], params: ExtraTreesParams, seed: int
) -> Pipeline:
    """Extremely randomised trees: random split points on all rows, quicker to fit than a forest."""
    model = ExtraTreesClassifier(n_jobs=-1, random_state=seed, **params.model_dump())
    return Pipeline([("preprocess", ordinal_categories(numeric, categorical)), ("model", model)])


MODEL_FAMILIES: dict[str, Callable[..., Pipeline]] = {
    "logistic_regression": logistic_regression_pipeline,
    "hist_gradient_boosting": hist_gradient_boosting_pipeline,
    "random_forest": random_forest_pipeline,
    "extra_trees": extra_trees_pipeline,
}


def family_pipeline(family: str, contract: Contract, params: Strict, seed: int) -> Pipeline:
    """An unfitted Pipeline of ``family`` with ``params``, preprocessing included."""
    numeric, categorical = model_columns(contract)
    return MODEL_FAMILIES[family](numeric, categorical, params, seed)


def candidate_pipelines(contract: Contract, candidates: CandidatesConfig, seed: int) -> dict[str, Pipeline]:
    """One unfitted Pipeline per configured model family, preprocessing included."""
    return {
        family: family_pipeline(family, contract, params, seed)
        for family, params in candidates.configured().items()
    }
