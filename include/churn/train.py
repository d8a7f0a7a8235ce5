"""Model Training: pick the best model family by cross-validation, calibrate it, track it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline

from churn.contract import Contract, load_contract
from churn.handoffs import FeatureResult, RunContext, TrainResult, accepts_handoffs
from churn.manifest import run_phase
from churn.model import candidate_pipelines, label_vector, model_inputs, sized_thread_pools
from churn.settings import PipelineConfig, Settings, code_version
from churn.storage import read_parquet, write_parquet_atomically
from churn.tracking import use_mlflow

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


def split_train_test(frame: pd.DataFrame, contract: Contract, test_fraction: float, seed: int):
    """A stratified hold-out split, so both parts keep the churn rate."""
    labels = label_vector(frame, contract)
    if len(np.unique(labels)) < 2:
        raise ValueError(
            f"training data has a single class in {contract.label_column!r}; cannot train a classifier"
        )
    return train_test_split(frame, test_size=test_fraction, stratify=labels, random_state=seed)


def stratified_sample(frame: pd.DataFrame, contract: Contract, max_rows: int, seed: int) -> pd.DataFrame:
    """``frame`` itself, or a sample of ``max_rows`` of its rows that keeps the churn rate."""
    if len(frame) <= max_rows:
        return frame
    sample, _ = train_test_split(
        frame, train_size=max_rows, stratify=label_vector(frame, contract), random_state=seed
    )
    return sample


def cross_validated_auc(
    pipelines: dict[str, Pipeline], inputs: pd.DataFrame, labels: np.ndarray, folds: int, seed: int
) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation of stratified k-fold ROC AUC for each candidate."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores = {}
    for family, pipeline in pipelines.items():
        fold_scores = cross_val_score(pipeline, inputs, labels, scoring="roc_auc", cv=splitter)
        scores[family] = (float(fold_scores.mean()), float(fold_scores.std()))
    return scores


def choose_winner(scores: dict[str, tuple[float, float]]) -> str:
    """The family with the best mean CV ROC AUC; ties go to the first in ``scores``, the simplest."""
    return max(scores, key=lambda family: scores[family][0])


def fit_calibrated(
    pipeline: Pipeline, inputs: pd.DataFrame, labels: np.ndarray, method: str, folds: int, seed: int
) -> CalibratedClassifierCV:
    """Fit the winner with cross-validated calibration so its scores are probabilities.

    The calibrator learns from the winner's out-of-fold predictions, and one copy of the
    winner, refit on all rows, does the predicting: scoring costs what the winner costs,
    not one pass per fold.
    """
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    calibrated = CalibratedClassifierCV(clone(pipeline), method=method, cv=splitter, ensemble=False)
    return calibrated.fit(inputs, labels)


def code_digest() -> str:
    """Hash of the churn package's own files and the versions of the libraries that fit models.

    Part of the training fingerprint, so a code or library change never reuses a model
    version trained by other code, even where no git commit identifies the code.
    """
    import mlflow
    import sklearn

    digest = hashlib.sha256(f"sklearn {sklearn.__version__} mlflow {mlflow.__version__}".encode())
    package_dir = Path(__file__).parent
    for path in sorted([*package_dir.rglob("*.py"), *package_dir.rglob("*.yaml")]):
        digest.update(path.relative_to(package_dir).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def training_fingerprint(
    train: pd.DataFrame, contract: Contract, config: dict[str, Any], code_version: str
) -> str:
    """Identify what a model is made of: its rows, its contract, its settings, its code.

    Two trainings with the same fingerprint produce the same model, so packaging reuses
    the registered version instead of registering a copy.
    """
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(train, index=False).to_numpy().tobytes())
    digest.update(contract.fingerprint.encode())
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    digest.update(code_version.encode())
    return digest.hexdigest()


def train_challenger(
    run: RunContext,
    features_path: ObjectStoragePath,
    contract: Contract,
    config: PipelineConfig,
    *,
    experiment_id: str,
) -> TrainResult:
    """Split, compare candidates, calibrate the winner and log it all to MLflow."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    split, training = config.split, config.training
    frame = read_parquet(features_path)
    available, test = split_train_test(frame, contract, split.test_fraction, split.seed)
    train = stratified_sample(available, contract, training.max_rows, training.seed)
    test_path = write_parquet_atomically(test, run.run_dir / "model" / "test_split.parquet")
    inputs, labels = model_inputs(train, contract), label_vector(train, contract)
    pipelines = candidate_pipelines(contract, training.candidates, training.seed)
    with sized_thread_pools():
        scores = cross_validated_auc(pipelines, inputs, labels, training.cv_folds, training.seed)
        winner = choose_winner(scores)
        model = fit_calibrated(
            pipelines[winner], inputs, labels, training.calibration, training.cv_folds, training.seed
        )
    version = code_version()
    fingerprint = training_fingerprint(
        train,
        contract,
        {"split": split.model_dump(mode="json"), "training": training.model_dump(mode="json")},
        f"{version} {code_digest()}",
    )
    example = inputs.head(5)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"train {run.score_date}",
        tags={
            "airflow_run_id": run.airflow_run_id,
            "score_date": run.score_date.isoformat(),
            "training_fingerprint": fingerprint,
            "code_version": version,
            "contract": contract.name,
            "contract_sha256": contract.fingerprint,
        },
    ) as tracked:
        winner_params = training.candidates.configured()[winner].model_dump()
        mlflow.log_params(
            {
                "model_family": winner,
                "calibration": training.calibration,
                "cv_folds": training.cv_folds,
                "seed": training.seed,
                "test_fraction": split.test_fraction,
                "train_rows": len(train),
                "train_rows_available": len(available),
                "test_rows": len(test),
                **{f"{winner}.{key}": value for key, value in winner_params.items()},
            }
        )
        for family, (mean, std) in scores.items():
            mlflow.log_metrics({f"cv_roc_auc_{family}": mean, f"cv_roc_auc_std_{family}": std})
        mlflow.log_metric("cv_roc_auc", scores[winner][0])
        model_info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict_proba(example)[:, 1]),
            input_example=example,
            serialization_format="cloudpickle",
        )
    return TrainResult(
        run=run,
        mlflow_run_id=tracked.info.run_id,
        model_uri=model_info.model_uri,
        model_family=winner,
        cv_roc_auc=scores[winner][0],
        training_fingerprint=fingerprint,
        train_rows=len(train),
        train_rows_available=len(available),
        test_rows=len(test),
        test_path=test_path,
    )


@accepts_handoffs
def run_train(features: FeatureResult, settings: Settings | None = None) -> TrainResult:
    """Train the run's challenger on its training features and track it in MLflow."""
    run = features.run

    def train() -> TrainResult:
        from churn.airflow_connections import task_settings

        configured = settings or task_settings(mlflow=True)
        return train_challenger(
            run,
            features.training_path,
            load_contract(run.contract),
            configured.config,
            experiment_id=use_mlflow(configured),
        )

    return run_phase("train", run, train)
