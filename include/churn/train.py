"""Model Training: choose a model by cross-validation on the training split, calibrate it, track it.

Every configured family competes twice over: with its configured hyperparameters, and with
the best configuration a successive-halving random search of its space finds in its share
of the time budget. All are scored by stratified k-fold ROC AUC on the same folds of the
training split; the test split is never seen here (evaluate scores it). After evaluation,
package refits the chosen configuration on every labelled row (:func:`refit_chosen`) and
registers that refit.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline

from churn.contract import Contract, load_contract
from churn.documents import Strict
from churn.handoffs import (
    FamilySelection,
    FeatureResult,
    ModelSelection,
    RunContext,
    TrainResult,
    accepts_handoffs,
)
from churn.manifest import read_manifests, run_phase
from churn.model import family_pipeline, label_vector, model_inputs, sized_thread_pools
from churn.settings import (
    FAMILY_PARAMS,
    IntegerRange,
    PipelineConfig,
    RealRange,
    Settings,
    TrainingConfig,
    code_version,
)
from churn.storage import read_parquet, write_parquet_atomically
from churn.tracking import use_mlflow

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

# Successive halving keeps the best third of the configurations each round, on three times the rows.
HALVING_FACTOR = 3
# Searches took 1.0 to 1.5 times what the plan predicted from the configured values' cost
# (16,000 rows, 2 cores): the configurations drawn may cost more (more trees, more columns
# per split). Plans keep that margin, so the last search does not overrun the budget.
PLANNING_MARGIN = 1.5


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
    pipeline: Pipeline, inputs: pd.DataFrame, labels: np.ndarray, folds: StratifiedKFold
) -> tuple[float, float]:
    """Mean and standard deviation of ROC AUC over ``folds``."""
    scores = cross_val_score(pipeline, inputs, labels, scoring="roc_auc", cv=folds, error_score="raise")
    return float(scores.mean()), float(scores.std())


def choose_winner(scores: dict[str, tuple[float, float]]) -> str:
    """The family with the best mean CV ROC AUC; ties go to the first in ``scores``, the simplest."""
    return max(scores, key=lambda family: scores[family][0])


def search_distributions(space: Strict) -> dict[str, Any]:
    """A search space as HalvingRandomSearchCV's distributions for a Pipeline's ``model`` step."""
    from scipy.stats import loguniform, randint, uniform

    distributions: dict[str, Any] = {}
    for name, values in space:
        if isinstance(values, IntegerRange):
            distributions[f"model__{name}"] = randint(values.low, values.high + 1)
        elif isinstance(values, RealRange):
            distributions[f"model__{name}"] = (
                loguniform(values.low, values.high)
                if values.log
                else uniform(values.low, values.high - values.low)
            )
        elif values is not None:
            distributions[f"model__{name}"] = list(values)
    return distributions


def configurations_in(space: Strict) -> float:
    """How many distinct configurations ``space`` holds (infinitely many with a real range)."""
    count = 1.0
    for _, values in space:
        if isinstance(values, IntegerRange):
            count *= values.high - values.low + 1
        elif isinstance(values, RealRange):
            return math.inf
        elif values is not None:
            count *= len({json.dumps(value) for value in values})
    return count


def halving_rounds(candidates: int) -> int:
    """Rounds a successive-halving search of ``candidates`` runs: until fewer than the factor remain."""
    rounds = 1
    while candidates >= HALVING_FACTOR**rounds:
        rounds += 1
    return rounds


@dataclass(frozen=True)
class SearchCost:
    """Seconds one configuration's cross-validation takes: measured on all ``rows`` and on a
    sample of ``sample_rows`` (the first round's size in the largest search), linear between.

    Fits on a sample cost more than their share of the rows (start-up and per-iteration
    work that does not shrink), so both ends are measured rather than assumed.
    """

    rows: int
    seconds: float
    sample_rows: int
    sample_seconds: float

    def seconds_for(self, rows: int) -> float:
        if self.rows <= self.sample_rows:
            return self.seconds
        share = min(max((rows - self.sample_rows) / (self.rows - self.sample_rows), 0.0), 1.0)
        return self.sample_seconds + (self.seconds - self.sample_seconds) * share


def first_round_rows(rows: int, candidates: int) -> int:
    """The rows the first round of a search of ``candidates`` uses, so that the last uses all."""
    return rows // HALVING_FACTOR ** (halving_rounds(candidates) - 1)


def predicted_search_seconds(candidates: int, cost: SearchCost) -> float:
    """What searching ``candidates`` configurations should take: each round cross-validates
    a third as many configurations as the last on three times the rows, the last round on
    all of them; then the best is cross-validated again on all rows."""
    rows, seconds, remaining = first_round_rows(cost.rows, candidates), cost.seconds, candidates
    for _ in range(halving_rounds(candidates)):
        seconds += remaining * cost.seconds_for(rows)
        rows, remaining = rows * HALVING_FACTOR, math.ceil(remaining / HALVING_FACTOR)
    return seconds


def affordable_candidates(max_candidates: int, space_size: float, cost: SearchCost, seconds_left: float) -> int:
    """The most configurations a search can afford in ``seconds_left``: all it may try
    (``max_candidates``, at most the space's size), else the largest power of the halving
    factor below that which fits; 0 when not even the smallest does."""
    most = int(min(max_candidates, space_size))
    options = [most] + [
        HALVING_FACTOR**power for power in range(halving_rounds(most) - 1, 0, -1) if HALVING_FACTOR**power < most
    ]
    return next((count for count in options if predicted_search_seconds(count, cost) <= seconds_left), 0)


def measured_cost(
    pipeline: Pipeline,
    inputs: pd.DataFrame,
    labels: np.ndarray,
    folds: StratifiedKFold,
    seconds: float,
    max_candidates: int,
    seed: int,
) -> SearchCost:
    """The cost of cross-validating ``pipeline``: ``seconds`` on all rows, and timed now on a
    stratified sample of the rows a search of ``max_candidates`` starts on."""
    sample_rows = max(first_round_rows(len(inputs), max_candidates), 4 * folds.get_n_splits())
    if sample_rows >= len(inputs):
        return SearchCost(len(inputs), seconds, len(inputs), seconds)
    sample, _, sample_labels, _ = train_test_split(
        inputs, labels, train_size=sample_rows, stratify=labels, random_state=seed
    )
    began = time.monotonic()
    # Only the time counts: on a sample this small a fold may miss a class.
    cross_val_score(pipeline, sample, sample_labels, scoring="roc_auc", cv=folds, error_score=np.nan)
    return SearchCost(len(inputs), seconds, sample_rows, time.monotonic() - began)


def plain(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds, for typed settings and JSON."""
    return value.item() if isinstance(value, np.generic) else value


def search_family(
    pipeline: Pipeline,
    space: Strict,
    inputs: pd.DataFrame,
    labels: np.ndarray,
    folds: StratifiedKFold,
    candidates: int,
    seed: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Successive-halving random search of ``candidates`` configurations drawn from ``space``.

    Returns the best configuration's hyperparameters and every configuration tried, each
    with its round, rows and CV ROC AUC (of the last round it reached).
    """
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingRandomSearchCV

    search = HalvingRandomSearchCV(
        pipeline,
        search_distributions(space),
        n_candidates=candidates,
        factor=HALVING_FACTOR,
        resource="n_samples",
        min_resources="exhaust",
        cv=folds,
        scoring="roc_auc",
        refit=False,
        # A first round's small, unstratified sample may hold a single class: such a fit
        # scores NaN and drops out. The configurations kept are cross-validated strictly.
        error_score=np.nan,
        random_state=seed,
    )
    search.fit(inputs, labels)
    results = search.cv_results_
    tried = [
        {
            "params": {name.removeprefix("model__"): plain(value) for name, value in params.items()},
            "round": int(results["iter"][index]),
            "rows": int(results["n_resources"][index]),
            "cv_roc_auc": float(results["mean_test_score"][index]),
            "cv_roc_auc_std": float(results["std_test_score"][index]),
        }
        for index, params in enumerate(results["params"])
    ]
    best = {name.removeprefix("model__"): plain(value) for name, value in search.best_params_.items()}
    return best, tried


@dataclass(frozen=True)
class Selection:
    """What model selection decided: each family's hyperparameters, the record, every configuration tried."""

    winner: str
    params: dict[str, Strict]
    record: ModelSelection
    tried: dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class SelectionData:
    """The rows model selection works on, with the folds every score is taken on."""

    inputs: pd.DataFrame
    labels: np.ndarray
    folds: StratifiedKFold
    contract: Contract
    seed: int

    def score(self, family: str, params: Strict) -> tuple[float, float]:
        pipeline = family_pipeline(family, self.contract, params, self.seed)
        return cross_validated_auc(pipeline, self.inputs, self.labels, self.folds)


def search_in_budget(
    data: SelectionData,
    family: str,
    params: Strict,
    configured: tuple[float, float, float],
    space: Strict,
    max_candidates: int,
    seconds_allowed: float,
) -> tuple[FamilySelection, Strict, list[dict[str, Any]]]:
    """Search ``family``'s space with as many configurations as ``seconds_allowed`` (its share
    of the budget) affords, judged from ``configured`` (its configured values' mean and std
    ROC AUC, and the seconds that took) and a timing on a small sample; keep the best only
    if it beats the configured values on the same folds."""
    mean, std, seconds = configured
    began = time.monotonic()
    size = configurations_in(space)
    pipeline = family_pipeline(family, data.contract, params, data.seed)
    count, tried, chosen, score = 0, [], params, (mean, std)
    # Even the smallest search ends on all rows, then cross-validates its best there again.
    if seconds_allowed >= 2 * seconds * PLANNING_MARGIN:
        cost = measured_cost(pipeline, data.inputs, data.labels, data.folds, seconds, max_candidates, data.seed)
        seconds_left = seconds_allowed - (time.monotonic() - began)
        count = affordable_candidates(max_candidates, size, cost, seconds_left / PLANNING_MARGIN)
    if count:
        best, tried = search_family(pipeline, space, data.inputs, data.labels, data.folds, count, data.seed)
        searched = type(params).model_validate({**params.model_dump(), **best})
        if searched != params and (searched_score := data.score(family, searched))[0] > mean:
            chosen, score = searched, searched_score
    status = "budget_spent" if not count else "searched" if count == min(max_candidates, size) else "reduced"
    selected = FamilySelection(
        family=family,
        params=chosen.model_dump(mode="json"),
        cv_roc_auc=score[0],
        cv_roc_auc_std=score[1],
        configured_cv_roc_auc=mean,
        configured_cv_roc_auc_std=std,
        search=status,
        configurations_tried=count,
        seconds=seconds + time.monotonic() - began,
    )
    return selected, chosen, tried


def select_model(
    inputs: pd.DataFrame, labels: np.ndarray, contract: Contract, training: TrainingConfig
) -> Selection:
    """Score every family by cross-validated ROC AUC on ``inputs`` (the training split) and
    choose the best.

    First every family's configured hyperparameters are cross-validated (always, so every
    family competes); then, in order, each family with a search space gets an equal share
    of the budget left among the families still to search, and searches as many
    configurations as that affords (:func:`search_in_budget`).
    """
    start = time.monotonic()
    folds = StratifiedKFold(n_splits=training.cv_folds, shuffle=True, random_state=training.seed)
    data = SelectionData(inputs, labels, folds, contract, training.seed)
    search = training.search
    spaces = search.spaces.configured() if search is not None else {}
    configured = training.candidates.configured()
    baseline: dict[str, tuple[float, float, float]] = {}
    for family, params in configured.items():
        began = time.monotonic()
        baseline[family] = (*data.score(family, params), time.monotonic() - began)

    chosen, families, tried = dict(configured), [], {}
    to_search = [family for family in configured if family in spaces]
    for family, params in configured.items():
        if family not in spaces:
            mean, std, seconds = baseline[family]
            families.append(
                FamilySelection(
                    family=family,
                    params=params.model_dump(mode="json"),
                    cv_roc_auc=mean,
                    cv_roc_auc_std=std,
                    configured_cv_roc_auc=mean,
                    configured_cv_roc_auc_std=std,
                    search="no_space",
                    configurations_tried=0,
                    seconds=seconds,
                )
            )
            continue
        share = (search.time_budget_seconds - (time.monotonic() - start)) / len(to_search)
        to_search.remove(family)
        selected, chosen[family], family_tried = search_in_budget(
            data, family, params, baseline[family], spaces[family], search.max_candidates, share
        )
        families.append(selected)
        if family_tried:
            tried[family] = family_tried
    record = ModelSelection(
        families=families,
        search_spaces={
            family: space.model_dump(mode="json", exclude_none=True) for family, space in spaces.items()
        },
        time_budget_seconds=search.time_budget_seconds if search is not None else None,
        seconds=time.monotonic() - start,
        cv_rows=len(inputs),
        cv_folds=training.cv_folds,
    )
    winner = choose_winner({family.family: (family.cv_roc_auc, family.cv_roc_auc_std) for family in families})
    return Selection(winner, chosen, record, tried)


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


def chosen_configuration(trained: TrainResult, training: TrainingConfig) -> dict[str, Any]:
    """What the chosen model is made of besides its rows: family, hyperparameters, calibration."""
    return {
        "family": trained.model_family,
        "params": trained.selection.family(trained.model_family).params,
        "calibration": training.calibration,
        "calibration_folds": training.cv_folds,
        "seed": training.seed,
    }


def log_model(model: CalibratedClassifierCV, name: str, example: pd.DataFrame) -> str:
    """Log ``model`` to the active MLflow run as ``name``, with its signature and an input
    example; return its URI."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    return mlflow.sklearn.log_model(
        model,
        name=name,
        signature=infer_signature(example, model.predict_proba(example)[:, 1]),
        input_example=example,
        serialization_format="cloudpickle",
    ).model_uri


def run_name(run: RunContext) -> str:
    """The training run's name in MLflow: the score date and the Airflow run it belongs to."""
    return f"train {run.score_date} · {run.airflow_run_id}"


def rows_digest(frame: pd.DataFrame) -> str:
    """A short digest of every value of ``frame`` (an MLflow dataset digest holds 36 characters)."""
    return hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()[:12]


def file_dataset(name: str, source: str, digest: str) -> Any:
    """An MLflow dataset that names a file and its digest, without copying or profiling its rows."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.exceptions import MlflowException

    try:
        with warnings.catch_warnings():  # MLflow registers local files twice (no scheme, file:) and says so
            warnings.filterwarnings("ignore", "The specified dataset source can be interpreted in multiple ways")
            resolved = resolve_dataset_source(source)
    except MlflowException:  # a storage MLflow has no dataset source for (abfs://...): the URI, as a tag
        resolved = CodeDatasetSource({"uri": source})
    return MetaDataset(resolved, name=name, digest=digest)


def log_datasets(
    run: RunContext,
    train: pd.DataFrame,
    features_path: ObjectStoragePath,
    test: pd.DataFrame,
    test_path: ObjectStoragePath,
) -> None:
    """Log the training run's inputs as MLflow datasets, each with its source and digest: the
    training snapshot as ingest landed it (its sha256), the rows trained on and the test rows."""
    import mlflow

    datasets, contexts, tags = [], [], []
    landed = read_manifests(run.run_dir).get("ingest")
    if landed is not None:
        snapshot = landed.training
        datasets.append(file_dataset("training snapshot", str(snapshot.path), snapshot.sha256[:12]))
        contexts.append("training")
        tags.append({"given_as": snapshot.source, "sha256": snapshot.sha256, "bytes": str(snapshot.bytes)})
    for name, context, frame, path in (
        ("training rows", "training", train, features_path),
        ("test rows", "testing", test, test_path),
    ):
        datasets.append(file_dataset(name, str(path), rows_digest(frame)))
        contexts.append(context)
        tags.append({"rows": str(len(frame))})
    mlflow.log_inputs(datasets=datasets, contexts=contexts, tags_list=tags)


def train_challenger(
    run: RunContext,
    features_path: ObjectStoragePath,
    contract: Contract,
    config: PipelineConfig,
    *,
    experiment_id: str,
) -> TrainResult:
    """Split, choose the model on the training split, calibrate it and log it all to MLflow.

    The MLflow run starts first, so its duration is the training's: selection and calibration
    included.
    """
    import mlflow

    split, training = config.split, config.training
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name(run),
        tags={
            "airflow_run_id": run.airflow_run_id,
            "score_date": run.score_date.isoformat(),
            "contract": contract.name,
            "contract_sha256": contract.fingerprint,
        },
    ) as tracked:
        frame = read_parquet(features_path)
        available, test = split_train_test(frame, contract, split.test_fraction, split.seed)
        train = stratified_sample(available, contract, training.max_rows, training.seed)
        test_path = write_parquet_atomically(test, run.run_dir / "model" / "test_split.parquet")
        log_datasets(run, train, features_path, test, test_path)
        inputs, labels = model_inputs(train, contract), label_vector(train, contract)
        with sized_thread_pools():
            selection = select_model(inputs, labels, contract, training)
            began = time.monotonic()
            winner = selection.winner
            model = fit_calibrated(
                family_pipeline(winner, contract, selection.params[winner], training.seed),
                inputs,
                labels,
                training.calibration,
                training.cv_folds,
                training.seed,
            )
            calibration_seconds = time.monotonic() - began
        record = selection.record
        version = code_version()
        fingerprint = training_fingerprint(
            train,
            contract,
            {
                "split": split.model_dump(mode="json"),
                "training": training.model_dump(mode="json"),
                "chosen": {"family": winner, "params": record.family(winner).params},
            },
            f"{version} {code_digest()}",
        )
        example = inputs.head(5)
        mlflow.set_tags(
            {
                "training_fingerprint": fingerprint,
                "code_version": version,
                **{f"search.{family.family}": family.search for family in record.families},
            }
        )
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
                "time_budget_seconds": record.time_budget_seconds,
                "max_candidates": training.search.max_candidates if training.search else None,
                **{
                    f"{family.family}.{key}": value
                    for family in record.families
                    for key, value in family.params.items()
                },
            }
        )
        for family in record.families:
            name = family.family
            mlflow.log_metrics(
                {
                    f"cv_roc_auc_{name}": family.cv_roc_auc,
                    f"cv_roc_auc_std_{name}": family.cv_roc_auc_std,
                    f"cv_roc_auc_configured_{name}": family.configured_cv_roc_auc,
                    f"configurations_tried_{name}": family.configurations_tried,
                    f"selection_seconds_{name}": family.seconds,
                }
            )
        mlflow.log_metrics(
            {
                "cv_roc_auc": record.family(winner).cv_roc_auc,
                "selection_seconds": record.seconds,
                "calibration_seconds": calibration_seconds,
            }
        )
        mlflow.log_dict(
            {**record.model_dump(mode="json"), "configurations_tried": selection.tried}, "model_selection.json"
        )
        model_uri = log_model(model, "model", example)
    return TrainResult(
        run=run,
        mlflow_run_id=tracked.info.run_id,
        model_uri=model_uri,
        model_family=winner,
        cv_roc_auc=record.family(winner).cv_roc_auc,
        training_fingerprint=fingerprint,
        train_rows=len(train),
        train_rows_available=len(available),
        test_rows=len(test),
        test_path=test_path,
        labelled_path=features_path,
        selection=record,
    )


@dataclass(frozen=True)
class Refit:
    """The registered model's rows: every labelled row (both splits; a stratified sample of
    ``max_rows`` above that), and the fingerprint of the model made from them."""

    rows: pd.DataFrame
    rows_available: int
    fingerprint: str


def plan_refit(trained: TrainResult, contract: Contract, training: TrainingConfig) -> Refit:
    """The rows the chosen configuration is refit on for registration, and what identifies
    that model: those rows, the contract, the chosen configuration and the code."""
    labelled = read_parquet(trained.labelled_path)
    rows = stratified_sample(labelled, contract, training.max_rows, training.seed)
    fingerprint = training_fingerprint(
        rows,
        contract,
        {"refit": chosen_configuration(trained, training)},
        f"{code_version()} {code_digest()}",
    )
    return Refit(rows, len(labelled), fingerprint)


def refit_chosen(
    trained: TrainResult, refit: Refit, contract: Contract, training: TrainingConfig
) -> CalibratedClassifierCV:
    """The chosen family, with the chosen hyperparameters and calibration, fitted on ``refit.rows``."""
    family = trained.model_family
    params = FAMILY_PARAMS[family].model_validate(trained.selection.family(family).params)
    with sized_thread_pools():
        return fit_calibrated(
            family_pipeline(family, contract, params, training.seed),
            model_inputs(refit.rows, contract),
            label_vector(refit.rows, contract),
            training.calibration,
            training.cv_folds,
            training.seed,
        )


def log_refit(trained: TrainResult, refit: Refit, model: CalibratedClassifierCV, contract: Contract) -> str:
    """Log the refit model to the training's MLflow run, beside the model evaluation scored;
    return its URI."""
    import mlflow

    with mlflow.start_run(run_id=trained.mlflow_run_id):
        mlflow.log_params({"refit_rows": len(refit.rows), "refit_rows_available": refit.rows_available})
        mlflow.set_tag("refit_fingerprint", refit.fingerprint)
        return log_model(model, "refit_model", model_inputs(refit.rows.head(5), contract))


@accepts_handoffs
def run_train(features: FeatureResult, settings: Settings | None = None) -> TrainResult:
    """Train the run's challenger on its training features and track it in MLflow; skip (raise
    :class:`~churn.errors.PhaseSkipped`) if the run cannot promote, so no challenger could be used."""
    run = features.run

    def train() -> TrainResult:
        from churn.airflow_connections import task_settings
        from churn.evaluate import skip_unless_promotable

        configured = settings or task_settings(warehouse=True, mlflow=True)
        skip_unless_promotable(run, configured)
        return train_challenger(
            run,
            features.training_path,
            load_contract(run.contract),
            configured.config,
            experiment_id=use_mlflow(configured),
        )

    return run_phase("train", run, train)
