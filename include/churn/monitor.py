"""Monitoring: how far the date's scoring population and its scores moved from the training
data of the model that scored them, and how good earlier scores proved once labels arrived.

Measured per run, one warehouse row per metric (``churn_monitoring``, the date replaced in
one transaction like ``churn_scores``) and an HTML report in ``<run folder>/monitoring/``:

* the population stability index (PSI) of every model input: numbers binned on the
  reference's quantiles, categories by level; the share of categories the reference never
  had; the share of missing values;
* the PSI of the churn probabilities (binned on the reference predictions' quantiles), their
  mean and the share of each risk band, against the same model's predictions for a seeded
  sample of its training rows;
* the realised ROC AUC of the scores of the most recent earlier date whose customers this
  run's training snapshot labels.

The reference is the training feature table the model version's MLflow run logged as its
"training rows" dataset: the labelled rows that version was fitted on. The scoring side is
read a Parquet row group (and a warehouse chunk) at a time, counting into bins, so a date of
10 million customers never sits in memory.

PSI is computed here, not with Evidently: Evidently 0.7.23 installs with our pins but fails
to import under pandas 3.1 (``ImportError: cannot import name 'infer_dtype_from_object' from
'pandas.core.dtypes.common'``), and PSI is a few lines of arithmetic on counts.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa

from churn.contract import Contract, load_contract
from churn.errors import PermanentError
from churn.handoffs import FeatureResult, MonitorResult, ScoreResult, accepts_handoffs
from churn.locations import location
from churn.manifest import run_phase
from churn.model import label_vector, model_columns, model_inputs, sized_thread_pools
from churn.settings import (
    MONITORING_REPORT_FOLDER,
    MONITORING_REPORT_INDEX,
    MonitoringConfig,
    Settings,
    redact_url,
)
from churn.storage import read_parquet_batches, writing_atomically
from churn.warehouse import (
    monitoring_table,
    open_scores_table,
    read_date_scores,
    replace_monitoring,
    scored_dates,
)

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

# The share an empty bin counts as: PSI takes the logarithm of each bin's share, which an
# empty bin (a level one side never has) would make infinite. 1e-4 is the usual floor: an
# empty bin facing a 10% one adds about 0.1 * ln(1000) = 0.69, a clear but finite signal.
EMPTY_BIN_SHARE = 1e-4
# The training run's MLflow dataset that names the rows it was fitted on (see train.log_datasets).
TRAINING_ROWS_DATASET = "training rows"
WAREHOUSE_CHUNK_ROWS = 100_000
REPORT_GROUPS = {
    "feature_psi": "Input drift: population stability index per feature",
    "unseen_category_share": "Categories the training data never had (share of rows)",
    "missing_rate": "Missing values (share of rows)",
    "prediction_psi": "Predictions",
    "churn_probability_mean": "Predictions",
    "risk_band_share": "Predictions",
    "realised_roc_auc": "Realised quality of earlier scores",
}


class MonitoringError(PermanentError, RuntimeError):
    """Monitoring cannot measure the date (its reference is missing or unreadable); retrying will not help."""


def population_stability_index(reference: Iterable[float], current: Iterable[float]) -> float | None:
    """PSI of two histograms over the same bins (counts): the sum over bins of
    ``(current share - reference share) * ln(current share / reference share)``.

    A bin empty on one side counts as :data:`EMPTY_BIN_SHARE` of it. None when a side has no rows.
    """
    reference_counts = np.asarray(list(reference), dtype=float)
    current_counts = np.asarray(list(current), dtype=float)
    if reference_counts.sum() <= 0 or current_counts.sum() <= 0:
        return None
    expected = np.maximum(reference_counts / reference_counts.sum(), EMPTY_BIN_SHARE)
    actual = np.maximum(current_counts / current_counts.sum(), EMPTY_BIN_SHARE)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def quantile_edges(values: np.ndarray, bins: int) -> np.ndarray:
    """The inner edges that cut ``values`` (missing ones ignored) into ``bins`` equally filled
    bins; fewer where values repeat. Each edge is a value the reference holds (no interpolation),
    so a column of few values (a yes/no one, a count) is binned by value."""
    present = values[~np.isnan(values)]
    if not len(present):
        return np.array([])
    return np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1], method="lower"))


@dataclass
class Histogram:
    """Counts of one column's values: numbers in the bins ``edges`` cut (bin ``i`` holds values
    from edge ``i - 1``, included, to edge ``i``), categories by level; and missing values."""

    edges: np.ndarray | None  # None: a categorical column
    counts: Counter = field(default_factory=Counter)
    missing: int = 0
    rows: int = 0

    def add(self, values: pd.Series) -> None:
        missing = values.isna().to_numpy()
        self.rows += len(values)
        self.missing += int(missing.sum())
        present = values[~missing]
        if self.edges is None:
            self.counts.update(present.astype(str).value_counts().to_dict())
        else:
            bins = np.searchsorted(self.edges, present.to_numpy(dtype=float), side="right")
            self.counts.update(Counter(bins.tolist()))

    def bins(self) -> list[Any]:
        return list(range(len(self.edges) + 1)) if self.edges is not None else sorted(self.counts, key=str)

    @property
    def missing_rate(self) -> float | None:
        return self.missing / self.rows if self.rows else None


def psi_between(reference: Histogram, current: Histogram) -> float | None:
    """PSI of ``current`` against ``reference`` over the reference's bins and, for categories,
    every level either side has (a level the reference lacks counts as an empty bin there)."""
    bins = reference.bins() if reference.edges is not None else sorted(set(reference.counts) | set(current.counts))
    return population_stability_index([reference.counts[b] for b in bins], [current.counts[b] for b in bins])


def unseen_share(reference: Histogram, current: Histogram) -> tuple[float | None, list[str]]:
    """The share of ``current``'s present values at a level ``reference`` never had, and those levels."""
    unseen = sorted(level for level in current.counts if level not in reference.counts)
    present = current.rows - current.missing
    return (sum(current.counts[level] for level in unseen) / present if present else None), unseen


@dataclass(frozen=True)
class Metric:
    """One row of ``churn_monitoring``, before the run's columns are added."""

    metric: str
    feature: str | None
    value: float | None
    reference_value: float | None = None
    threshold: float | None = None
    detail: str | None = None

    @property
    def drifted(self) -> bool | None:
        if self.threshold is None:
            return None
        return self.value is not None and self.value > self.threshold


def empty_profile(edges: dict[str, np.ndarray], categorical: list[str]) -> dict[str, Histogram]:
    return {
        **{column: Histogram(column_edges) for column, column_edges in edges.items()},
        **{column: Histogram(None) for column in categorical},
    }


def profile(
    batches: Iterable[pd.DataFrame], edges: dict[str, np.ndarray], categorical: list[str]
) -> dict[str, Histogram]:
    """Every model input's histogram over ``batches`` (the model's inputs), one batch in memory at a time."""
    histograms = empty_profile(edges, categorical)
    for batch in batches:
        for column, histogram in histograms.items():
            histogram.add(batch[column])
    return histograms


def feature_metrics(
    reference: dict[str, Histogram], current: dict[str, Histogram], threshold: float
) -> list[Metric]:
    """PSI, unseen-category share and missing rate of every model input."""
    metrics = []
    for column, known in reference.items():
        seen = current[column]
        metrics.append(Metric("feature_psi", column, psi_between(known, seen), threshold=threshold))
        if known.edges is None:
            share, levels = unseen_share(known, seen)
            detail = f"unseen: {', '.join(levels[:5])}{' …' if len(levels) > 5 else ''}" if levels else None
            metrics.append(Metric("unseen_category_share", column, share, reference_value=0.0, detail=detail))
        metrics.append(Metric("missing_rate", column, seen.missing_rate, reference_value=known.missing_rate))
    return metrics


def prediction_metrics(
    reference_probabilities: pd.Series,
    reference_bands: pd.Series,
    current_probabilities: Histogram,
    current_bands: Counter,
    current_sum: float,
    bands: list[str],
    threshold: float,
) -> list[Metric]:
    """The churn probabilities' PSI and mean, and each risk band's share, against the reference predictions."""
    reference = Histogram(current_probabilities.edges)
    reference.add(reference_probabilities)
    scored = current_probabilities.rows
    reference_band_counts = reference_bands.value_counts()
    metrics = [
        Metric("prediction_psi", None, psi_between(reference, current_probabilities), threshold=threshold),
        Metric(
            "churn_probability_mean",
            None,
            current_sum / scored if scored else None,
            reference_value=float(reference_probabilities.mean()),
        ),
    ]
    for band in bands:
        metrics.append(
            Metric(
                "risk_band_share",
                band,
                current_bands.get(band, 0) / scored if scored else None,
                reference_value=float(reference_band_counts.get(band, 0) / len(reference_bands)),
            )
        )
    return metrics


@dataclass(frozen=True)
class RealisedQuality:
    roc_auc: float
    score_date: date
    customers: int


def realised_roc_auc(
    labels: pd.DataFrame, earlier: Iterable[tuple[date, Iterator[pd.DataFrame]]]
) -> RealisedQuality | None:
    """ROC AUC of the stored probabilities of the most recent earlier date (``earlier``, newest
    first: each date with its scores in chunks) some of whose customers ``labels`` (customer_id,
    label 0/1) now labels; None when no date has labelled customers of both outcomes."""
    from sklearn.metrics import roc_auc_score

    known = labels.set_index("customer_id")["label"]
    for score_date, chunks in earlier:
        matched = []
        for chunk in chunks:
            found = known.reindex(chunk["customer_id"].to_numpy()).to_numpy(dtype=float)
            labelled = ~np.isnan(found)
            if labelled.any():
                probabilities = chunk["churn_probability"].to_numpy(dtype=float)[labelled]
                matched.append(pd.DataFrame({"probability": probabilities, "label": found[labelled]}))
        joined = pd.concat(matched, ignore_index=True) if matched else None
        if joined is not None and joined["label"].nunique() == 2:
            return RealisedQuality(
                float(roc_auc_score(joined["label"], joined["probability"])), score_date, len(joined)
            )
    return None


@dataclass(frozen=True)
class Reference:
    """The training data of the model version that scored the date, and where it was found."""

    model_version: str
    mlflow_run_id: str
    path: str


def find_reference(model_name: str, version: str) -> Reference:
    """The training feature table the version's MLflow run logged as its training rows."""
    from mlflow import MlflowClient

    client = MlflowClient()
    registered = client.get_model_version(model_name, version)
    run_id = registered.tags.get("source_mlflow_run_id") or registered.run_id
    for dataset_input in client.get_run(run_id).inputs.dataset_inputs:
        if dataset_input.dataset.name == TRAINING_ROWS_DATASET:
            return Reference(version, run_id, json.loads(dataset_input.dataset.source)["uri"])
    raise MonitoringError(
        f"{model_name!r} version {version}: its MLflow run {run_id} logged no {TRAINING_ROWS_DATASET!r} dataset, "
        "so there is no training data to compare the date with"
    )


def sample_rows(path: ObjectStoragePath, rows: int, seed: int) -> pd.DataFrame:
    """A seeded sample of at most ``rows`` rows of a Parquet table, read a row group at a time."""
    with location(path).open("rb") as handle:
        total = pq.ParquetFile(handle).metadata.num_rows
    chosen = np.sort(np.random.default_rng(seed).choice(total, size=min(rows, total), replace=False))
    kept, first = [], 0
    for batch in read_parquet_batches(path):
        end = first + len(batch)
        wanted = chosen[(chosen >= first) & (chosen < end)] - first
        if len(wanted):
            kept.append(batch.iloc[wanted])
        first = end
    return pd.concat(kept, ignore_index=True)


def readable_reference(reference: Reference) -> ObjectStoragePath:
    path = location(reference.path)
    if not path.is_file():
        raise MonitoringError(
            f"the training data of version {reference.model_version} (MLflow run {reference.mlflow_run_id}'s "
            f"{TRAINING_ROWS_DATASET!r}) is gone from {reference.path}; restore that run folder to monitor "
            "against it"
        )
    return path


def labelled_customers(path: ObjectStoragePath, contract: Contract) -> pd.DataFrame:
    """Customer id and label (1 churned) of every row of a labelled feature table."""
    parts = [
        pd.DataFrame(
            {"customer_id": contract.customer_ids(batch).to_numpy(), "label": label_vector(batch, contract)}
        )
        for batch in read_parquet_batches(path)
    ]
    return pd.concat(parts, ignore_index=True)


def model_input_batches(path: ObjectStoragePath, contract: Contract) -> Iterator[pd.DataFrame]:
    """A feature table's model inputs, a row group at a time."""
    return (model_inputs(batch, contract) for batch in read_parquet_batches(path))


def measure(
    features: FeatureResult, scored: ScoreResult, settings: Settings
) -> tuple[list[Metric], Reference, RealisedQuality | None]:
    """Every metric of the date, against the training data of the version that scored it."""
    from churn.score import score_frame
    from churn.tracking import load_registered_model, use_mlflow

    config = settings.config.monitoring
    thresholds = config.drift_thresholds
    contract = load_contract(features.run.contract)
    numeric, categorical = model_columns(contract)
    use_mlflow(settings)
    reference = find_reference(settings.config.registered_model, scored.model_version)
    reference_path = readable_reference(reference)

    sample = sample_rows(reference_path, config.reference_sample_rows, config.seed)
    sample_inputs = model_inputs(sample, contract)
    edges = {column: quantile_edges(sample_inputs[column].to_numpy(float), config.bins) for column in numeric}
    metrics = feature_metrics(
        profile(model_input_batches(reference_path, contract), edges, categorical),
        profile(model_input_batches(features.scoring_path, contract), edges, categorical),
        thresholds.feature_psi,
    )

    model = load_registered_model(settings.config.registered_model, scored.model_version)
    with sized_thread_pools():
        predicted = score_frame(model, sample, contract, settings.config.risk_bands)
    probabilities = Histogram(quantile_edges(predicted["churn_probability"].to_numpy(float), config.bins))
    bands: Counter = Counter()
    probability_sum = 0.0
    labels = labelled_customers(features.training_path, contract)
    with open_scores_table(settings) as (engine, table):
        for chunk in read_date_scores(
            engine, table, features.run.score_date, WAREHOUSE_CHUNK_ROWS, ["churn_probability", "risk_band"]
        ):
            probabilities.add(chunk["churn_probability"].astype(float))
            bands.update(chunk["risk_band"].value_counts().to_dict())
            probability_sum += float(chunk["churn_probability"].sum())
        metrics += prediction_metrics(
            predicted["churn_probability"],
            predicted["risk_band"],
            probabilities,
            bands,
            probability_sum,
            list(settings.config.risk_bands),
            thresholds.prediction_psi,
        )
        score_date = features.run.score_date
        earlier = scored_dates(
            engine, table, score_date - timedelta(days=config.realised_auc_lookback_days), score_date
        )
        realised = realised_roc_auc(
            labels,
            (
                (
                    day,
                    read_date_scores(
                        engine, table, day, WAREHOUSE_CHUNK_ROWS, ["customer_id", "churn_probability"]
                    ),
                )
                for day in earlier
            ),
        )
    if realised is not None:
        metrics.append(
            Metric(
                "realised_roc_auc",
                None,
                realised.roc_auc,
                detail=f"scores of {realised.score_date} for {realised.customers:,} customers this run's "
                "training snapshot labels",
            )
        )
    return metrics, reference, realised


def metric_rows(metrics: list[Metric], run_id: str, model_version: str, computed_at: datetime) -> pd.DataFrame:
    """The metrics as ``churn_monitoring`` rows (without the date, which the write adds); a value
    that could not be computed is NULL."""
    rows = pd.DataFrame(
        [
            {
                "run_id": run_id,
                "metric": metric.metric,
                "feature": metric.feature,
                "value": metric.value,
                "reference_value": metric.reference_value,
                "threshold": metric.threshold,
                "drifted": metric.drifted,
                "detail": metric.detail,
                "model_version": model_version,
                "computed_at": computed_at,
            }
            for metric in metrics
        ]
    )
    return rows.astype(object).where(rows.notna(), None)


REPORT_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #1d2433; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; min-width: 40rem; }
th, td { border: 1px solid #c9ced6; padding: 0.3rem 0.6rem; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.drifted td { background: #fde2e1; font-weight: 600; }
.verdict { padding: 0.6rem 1rem; border-radius: 4px; display: inline-block; }
.verdict.drift { background: #fde2e1; } .verdict.stable { background: #dff3e3; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { font-weight: 600; }
"""


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def render_report(result: MonitorResult, metrics: list[Metric]) -> str:
    """The run's monitoring report: one self-contained HTML page (no script, font or style from
    elsewhere), a table per metric group, rows above their threshold highlighted."""
    verdict = (
        f'<p class="verdict drift">Drift above the thresholds: {html.escape(result.retraining_reason)}</p>'
        if result.drifted
        else '<p class="verdict stable">No drift above the thresholds.</p>'
    )
    facts = {
        "Score date": str(result.run.score_date),
        "Airflow run": result.run.airflow_run_id,
        "Model version": result.model_version,
        "Reference": f"{result.reference_path} (MLflow run {result.reference_mlflow_run_id})",
        "Thresholds": f"feature PSI above {result.feature_psi_threshold}, prediction PSI above "
        f"{result.prediction_psi_threshold}",
    }
    sections = []
    for group in dict.fromkeys(REPORT_GROUPS.values()):
        rows = [metric for metric in metrics if REPORT_GROUPS[metric.metric] == group]
        if not rows:
            continue
        body = "".join(
            f'<tr class="{"drifted" if metric.drifted else ""}"><td>{html.escape(metric.metric)}</td>'
            f"<td>{html.escape(metric.feature or '')}</td>"
            f'<td class="number">{_number(metric.value)}</td>'
            f'<td class="number">{_number(metric.reference_value)}</td>'
            f'<td class="number">{_number(metric.threshold)}</td>'
            f"<td>{html.escape(metric.detail or '')}</td></tr>"
            for metric in rows
        )
        sections.append(
            f"<h2>{html.escape(group)}</h2><table><thead><tr><th>metric</th><th>feature</th><th>value</th>"
            f"<th>reference</th><th>threshold</th><th>detail</th></tr></thead><tbody>{body}</tbody></table>"
        )
    if all(metric.metric != "realised_roc_auc" for metric in metrics):
        sections.append(
            "<h2>Realised quality of earlier scores</h2><p>No customer scored on an earlier date "
            "has a label in this run's training snapshot yet.</p>"
        )
    details = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in facts.items())
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Churn monitoring {result.run.score_date}</title><style>{REPORT_STYLE}</style></head><body>"
        f"<h1>Churn monitoring for {result.run.score_date}</h1>{verdict}<dl>{details}</dl>"
        f"{''.join(sections)}</body></html>"
    )


def retraining_decision(
    drifted_features: dict[str, float],
    prediction_psi: float | None,
    config: MonitoringConfig,
    triggered_by_drift: bool,
    scored_rows: int,
) -> tuple[bool, str]:
    """Whether the date's drift asks for a retraining run, and why in words.

    A run that drift itself triggered never asks again: its own data is the drifted data, so
    asking would start retraining runs one after the other until the data came back. Nor does
    a date with fewer than ``config.min_rows_to_judge`` scored customers, whose PSI is noise.
    """
    thresholds = config.drift_thresholds
    reasons = [f"{name} PSI {psi:.3f} > {thresholds.feature_psi}" for name, psi in drifted_features.items()]
    if prediction_psi is not None and prediction_psi > thresholds.prediction_psi:
        reasons.append(f"prediction PSI {prediction_psi:.3f} > {thresholds.prediction_psi}")
    if not reasons:
        return False, "no retraining requested: no drift above the thresholds"
    if scored_rows < config.min_rows_to_judge:
        return False, (
            f"no retraining requested: too few scored customers to judge drift ({scored_rows:,}, "
            f"fewer than monitoring.min_rows_to_judge {config.min_rows_to_judge:,}): {'; '.join(reasons)}"
        )
    if triggered_by_drift:
        return False, f"no retraining requested: this run was itself started by drift ({'; '.join(reasons)})"
    return True, f"retraining requested: {'; '.join(reasons)}"


def monitor_date(features: FeatureResult, scored: ScoreResult, settings: Settings) -> MonitorResult:
    """Measure the date, replace its rows in the monitoring table and write the run's report."""
    run = features.run
    config = settings.config.monitoring
    metrics, reference, realised = measure(features, scored, settings)
    drifted_features = {
        metric.feature: round(metric.value, 4)
        for metric in metrics
        if metric.metric == "feature_psi" and metric.drifted and metric.feature
    }
    prediction_psi = next(metric.value for metric in metrics if metric.metric == "prediction_psi")
    requested, reason = retraining_decision(
        drifted_features, prediction_psi, config, run.drift_triggered, scored.rows_written
    )
    rows = metric_rows(metrics, run.airflow_run_id, scored.model_version, datetime.now(UTC))
    with open_scores_table(settings) as (engine, _scores):
        table = monitoring_table(sa.MetaData(), config.table, settings.config.warehouse.schema_name)
        written = replace_monitoring(engine, table, run.score_date, rows)
        table_name = f"{table.fullname} at {redact_url(engine.url)}"
    result = MonitorResult(
        run=run,
        model_version=scored.model_version,
        reference_path=reference.path,
        reference_mlflow_run_id=reference.mlflow_run_id,
        table=table_name,
        rows_written=written,
        report=run.run_dir / MONITORING_REPORT_FOLDER / MONITORING_REPORT_INDEX,
        drifted_features=drifted_features,
        prediction_psi=None if prediction_psi is None else round(prediction_psi, 4),
        feature_psi_threshold=config.drift_thresholds.feature_psi,
        prediction_psi_threshold=config.drift_thresholds.prediction_psi,
        realised_roc_auc=None if realised is None else round(realised.roc_auc, 4),
        realised_auc_score_date=None if realised is None else realised.score_date,
        realised_auc_customers=0 if realised is None else realised.customers,
        retraining_requested=requested,
        retraining_reason=reason,
    )
    with writing_atomically(result.report) as partial:
        partial.write_text(render_report(result, metrics), encoding="utf-8")
    return result


@accepts_handoffs
def run_monitor(
    features: FeatureResult,
    scored: ScoreResult,
    *,
    settings: Settings | None = None,
) -> MonitorResult:
    """The monitor phase: measure the date's drift and realised quality; drift never fails it."""
    from churn.airflow_connections import task_settings

    return run_phase(
        "monitor",
        features.run,
        lambda: monitor_date(
            features,
            scored,
            settings or task_settings(warehouse=True, mlflow=True),
        ),
    )
