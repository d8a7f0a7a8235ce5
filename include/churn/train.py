"""Model Training: pick the best model family by cross-validation, calibrate it, track it.

Each candidate is one scikit-learn Pipeline holding its preprocessing, so the model that
is scored later carries exactly the transformations it was trained with.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from churn.contract import Contract, load_contract
from churn.feature import model_columns
from churn.ingest import write_parquet_atomically
from churn.manifest import recording_failure, write_manifest
from churn.settings import Settings, code_version
from churn.tracking import use_mlflow


@dataclass(frozen=True)
class TrainingOutcome:
    mlflow_run_id: str
    model_uri: str
    model_family: str
    cv_roc_auc: float
    training_fingerprint: str
    train_rows: int
    test_rows: int
    test_path: str


def model_inputs(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """The model's input columns with plain dtypes: float numbers, object categories."""
    numeric, categorical = model_columns(contract)
    inputs = pd.DataFrame(index=frame.index)
    for column in numeric:
        inputs[column] = frame[column].astype("float64")
    for column in categorical:
        inputs[column] = frame[column].astype(object).where(frame[column].notna(), np.nan)
    return inputs


def label_vector(frame: pd.DataFrame, contract: Contract) -> np.ndarray:
    """1 for the contract's positive label (a churner), 0 otherwise."""
    return (frame[contract.label_column] == contract.positive_label).to_numpy(dtype=int)


def split_train_test(frame: pd.DataFrame, contract: Contract, test_fraction: float, seed: int):
    """A stratified hold-out split, so both parts keep the churn rate."""
    labels = label_vector(frame, contract)
    if len(np.unique(labels)) < 2:
        raise ValueError(
            f"training data has a single class in {contract.label_column!r}; cannot train a classifier"
        )
    return train_test_split(frame, test_size=test_fraction, stratify=labels, random_state=seed)


def candidate_pipelines(
    contract: Contract, candidates: dict[str, dict[str, Any]], seed: int
) -> dict[str, Pipeline]:
    """One unfitted Pipeline per configured model family, preprocessing included."""
    numeric, categorical = model_columns(contract)
    builders = {
        "logistic_regression": lambda params: Pipeline(
            [
                (
                    "preprocess",
                    ColumnTransformer(
                        [
                            (
                                "numeric",
                                Pipeline(
                                    [
                                        ("impute", SimpleImputer(strategy="median")),
                                        ("scale", StandardScaler()),
                                    ]
                                ),
                                numeric,
                            ),
                            (
                                "categorical",
                                Pipeline(
                                    [
                                        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                                        (
                                            "encode",
                                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                                        ),
                                    ]
                                ),
                                categorical,
                            ),
                        ]
                    ),
                ),
                ("model", LogisticRegression(max_iter=2000, random_state=seed, **params)),
            ]
        ),
        "hist_gradient_boosting": lambda params: Pipeline(
            [
                (
                    "preprocess",
                    ColumnTransformer(
                        [
                            ("numeric", "passthrough", numeric),
                            (
                                "categorical",
                                OrdinalEncoder(
                                    handle_unknown="use_encoded_value",
                                    unknown_value=np.nan,
                                    encoded_missing_value=np.nan,
                                ),
                                categorical,
                            ),
                        ]
                    ),
                ),
                (
                    "model",
                    HistGradientBoostingClassifier(
                        categorical_features=[False] * len(numeric) + [True] * len(categorical),
                        random_state=seed,
                        **params,
                    ),
                ),
            ]
        ),
    }
    unknown = set(candidates) - set(builders)
    if unknown:
        raise ValueError(f"unknown model families {sorted(unknown)}; known: {sorted(builders)}")
    return {family: builders[family](params or {}) for family, params in candidates.items()}


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
    """The family with the best mean CV ROC AUC; ties go to the first configured."""
    return max(scores, key=lambda family: scores[family][0])


def fit_calibrated(
    pipeline: Pipeline, inputs: pd.DataFrame, labels: np.ndarray, method: str, folds: int, seed: int
) -> CalibratedClassifierCV:
    """Fit the winner with cross-validated calibration so its scores are probabilities."""
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return CalibratedClassifierCV(clone(pipeline), method=method, cv=splitter).fit(inputs, labels)


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
    features_path: Path,
    contract: Contract,
    pipeline_config: dict[str, Any],
    run_dir: Path,
    *,
    experiment_id: str,
    tags: dict[str, str],
    code_version: str,
) -> TrainingOutcome:
    """Split, compare candidates, calibrate the winner and log it all to MLflow."""
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    split_config, training_config = pipeline_config["split"], pipeline_config["training"]
    frame = pd.read_parquet(features_path)
    train, test = split_train_test(frame, contract, split_config["test_fraction"], split_config["seed"])
    test_path = write_parquet_atomically(test, run_dir / "model" / "test_split.parquet")
    inputs, labels = model_inputs(train, contract), label_vector(train, contract)
    seed, folds = training_config["seed"], training_config["cv_folds"]
    pipelines = candidate_pipelines(contract, training_config["candidates"], seed)
    scores = cross_validated_auc(pipelines, inputs, labels, folds, seed)
    winner = choose_winner(scores)
    model = fit_calibrated(pipelines[winner], inputs, labels, training_config["calibration"], folds, seed)
    fingerprint = training_fingerprint(
        train, contract, {"split": split_config, "training": training_config}, f"{code_version} {code_digest()}"
    )
    example = inputs.head(5)
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"train {tags.get('score_date', '')}",
        tags={
            **tags,
            "training_fingerprint": fingerprint,
            "code_version": code_version,
            "contract": contract.name,
            "contract_sha256": contract.fingerprint,
        },
    ) as run:
        mlflow.log_params(
            {
                "model_family": winner,
                "calibration": training_config["calibration"],
                "cv_folds": folds,
                "seed": seed,
                "test_fraction": split_config["test_fraction"],
                "train_rows": len(train),
                "test_rows": len(test),
                **{f"{winner}.{key}": value for key, value in training_config["candidates"][winner].items()},
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
    return TrainingOutcome(
        mlflow_run_id=run.info.run_id,
        model_uri=model_info.model_uri,
        model_family=winner,
        cv_roc_auc=scores[winner][0],
        training_fingerprint=fingerprint,
        train_rows=len(train),
        test_rows=len(test),
        test_path=str(test_path),
    )


def run_train(run: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Train the run's challenger and record its MLflow run and test split."""
    run_dir = Path(run["run_dir"])
    with recording_failure(run_dir, "train"):
        outcome = train_challenger(
            Path(run["feature"]["training"]["path"]),
            load_contract(run["contract"]),
            settings.pipeline,
            run_dir,
            experiment_id=use_mlflow(settings),
            tags={"airflow_run_id": run["airflow_run_id"], "score_date": run["score_date"]},
            code_version=code_version(),
        )
    return {**run, "train": write_manifest(run_dir, "train", asdict(outcome))}
