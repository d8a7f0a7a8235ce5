"""Monitoring: PSI and the other drift metrics, the realised ROC AUC join, the monitoring
table's per-date replace, the HTML report, and the rule that asks for retraining."""

from __future__ import annotations

import math
import uuid
from collections import Counter
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from churn.monitor import (
    EMPTY_BIN_SHARE,
    Histogram,
    Metric,
    feature_metrics,
    metric_rows,
    population_stability_index,
    psi_between,
    quantile_edges,
    realised_roc_auc,
    render_report,
    retraining_decision,
    unseen_share,
)
from churn.settings import MonitoringConfig
from churn.warehouse import WarehouseError, monitoring_table, replace_monitoring, warehouse_engine
from tests.conftest import SCORE_DATE, run_context


def test_identical_distributions_have_a_psi_of_zero():
    assert population_stability_index([10, 20, 30], [10, 20, 30]) == 0.0
    assert population_stability_index([10, 20, 30], [100, 200, 300]) == pytest.approx(0.0)


def test_a_known_shift_has_its_known_psi():
    # (0.9 - 0.5) ln(0.9 / 0.5) + (0.1 - 0.5) ln(0.1 / 0.5)
    assert population_stability_index([50, 50], [90, 10]) == pytest.approx(0.4 * math.log(1.8) + 0.4 * math.log(5))


def test_an_empty_bin_counts_as_a_small_share_so_the_psi_stays_finite():
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - EMPTY_BIN_SHARE) * math.log(0.5 / EMPTY_BIN_SHARE)
    assert population_stability_index([100, 0], [50, 50]) == pytest.approx(expected)
    assert population_stability_index([0, 0], [1, 2]) is None
    assert population_stability_index([1, 2], [0, 0]) is None


def test_numbers_are_binned_on_the_references_quantiles():
    rng = np.random.default_rng(1)
    reference = rng.normal(60, 15, 50_000)
    edges = quantile_edges(reference, 10)
    assert len(edges) == 9
    same, shifted, known = Histogram(edges), Histogram(edges), Histogram(edges)
    known.add(pd.Series(reference))
    same.add(pd.Series(rng.normal(60, 15, 20_000)))
    shifted.add(pd.Series(rng.normal(75, 15, 20_000)))  # a shift of one standard deviation
    assert psi_between(known, same) < 0.01
    assert psi_between(known, shifted) > 0.25
    # a yes/no column has one edge, and its values fall either side of it
    assert quantile_edges(np.array([0.0] * 80 + [1.0] * 20), 10).tolist() == [0.0, 1.0]


def test_unseen_categories_are_their_own_bins_and_their_share_is_reported():
    reference, current = Histogram(None), Histogram(None)
    reference.add(pd.Series(["a"] * 50 + ["b"] * 50))
    current.add(pd.Series(["a"] * 40 + ["b"] * 40 + ["c"] * 20))
    share, levels = unseen_share(reference, current)
    assert (share, levels) == (0.2, ["c"])
    expected = population_stability_index([50, 50, 0], [40, 40, 20])
    assert psi_between(reference, current) == pytest.approx(expected)
    [psi, unseen, missing] = feature_metrics({"kind": reference}, {"kind": current}, threshold=0.25)
    assert (psi.metric, psi.drifted) == ("feature_psi", True)
    assert (unseen.metric, unseen.value, unseen.detail) == ("unseen_category_share", 0.2, "unseen: c")
    assert (missing.metric, missing.value) == ("missing_rate", 0.0)


def test_missing_values_are_counted_apart_from_the_bins():
    numbers = Histogram(np.array([1.0]))
    numbers.add(pd.Series([0.5, np.nan, 2.0, np.nan]))
    assert (numbers.missing_rate, numbers.counts) == (0.5, Counter({0: 1, 1: 1}))
    levels = Histogram(None)
    levels.add(pd.Series(["x", None, "x", "y"], dtype=object))
    assert (levels.missing_rate, dict(levels.counts)) == (0.25, {"x": 2, "y": 1})
    assert Histogram(None).missing_rate is None


def _chunks(frame: pd.DataFrame, size: int = 2):
    return (frame.iloc[start : start + size] for start in range(0, len(frame), size))


def test_the_realised_auc_judges_the_most_recent_earlier_date_with_labelled_customers():
    labels = pd.DataFrame({"customer_id": ["a", "b", "c", "d"], "label": [1, 0, 1, 0]})
    unlabelled = pd.DataFrame({"customer_id": ["x", "y"], "churn_probability": [0.9, 0.1]})
    earlier = pd.DataFrame(
        {"customer_id": ["a", "b", "c", "d", "z"], "churn_probability": [0.8, 0.3, 0.2, 0.6, 0.5]}
    )
    older = pd.DataFrame({"customer_id": ["a", "b"], "churn_probability": [0.9, 0.1]})
    found = realised_roc_auc(
        labels,
        [
            (date(2026, 11, 28), _chunks(unlabelled)),
            (date(2026, 11, 20), _chunks(earlier)),
            (date(2026, 11, 10), _chunks(older)),
        ],
    )
    # a 0.8 > b 0.3, a > d 0.6, c 0.2 < b, c < d: two of four pairs in order
    assert (found.score_date, found.customers, found.roc_auc) == (date(2026, 11, 20), 4, 0.5)


def test_no_realised_auc_without_labelled_customers_of_both_outcomes():
    labels = pd.DataFrame({"customer_id": ["a", "b"], "label": [1, 1]})
    scores = pd.DataFrame({"customer_id": ["a", "b"], "churn_probability": [0.4, 0.6]})
    assert realised_roc_auc(labels, [(date(2026, 11, 28), _chunks(scores))]) is None
    assert realised_roc_auc(labels, []) is None


def _rows(run_id: str, value: float = 0.1, metrics: int = 3) -> pd.DataFrame:
    return metric_rows(
        [Metric("feature_psi", f"f{index}", value, threshold=0.25) for index in range(metrics)],
        run_id,
        "3",
        datetime(2026, 11, 29, 3, tzinfo=UTC),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def monitoring(request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'warehouse.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    engine = warehouse_engine(url)
    table = monitoring_table(sa.MetaData(), f"churn_monitoring_{uuid.uuid4().hex[:8]}", None)
    yield engine, table
    table.drop(engine, checkfirst=True)
    engine.dispose()


def _stored(engine, table) -> pd.DataFrame:
    with engine.connect() as connection:
        return pd.read_sql(sa.select(table).order_by(table.c.score_date, table.c.feature), connection)


def test_a_rerun_replaces_exactly_its_dates_monitoring_rows(monitoring):
    engine, table = monitoring
    other_day = date(2026, 11, 28)
    assert replace_monitoring(engine, table, other_day, _rows("run-a")) == 3
    replace_monitoring(engine, table, SCORE_DATE, _rows("run-b"))
    replace_monitoring(engine, table, SCORE_DATE, _rows("run-c", value=0.4, metrics=2))
    replace_monitoring(engine, table, SCORE_DATE, _rows("run-c", value=0.4, metrics=2))  # idempotent
    stored = _stored(engine, table)
    assert stored.groupby("score_date")["run_id"].agg(set).to_dict() == {
        other_day: {"run-a"},
        SCORE_DATE: {"run-c"},
    }
    assert len(stored[stored["score_date"] == SCORE_DATE]) == 2
    today = stored[stored["score_date"] == SCORE_DATE]
    assert today["drifted"].tolist() == [True, True] and today["threshold"].tolist() == [0.25, 0.25]


def test_a_write_that_fails_half_way_leaves_the_dates_earlier_rows(monitoring):
    engine, table = monitoring
    replace_monitoring(engine, table, SCORE_DATE, _rows("run-a"))
    broken = _rows("run-b")
    broken.loc[2, "metric"] = None  # the last row breaks the table's NOT NULL, after the delete ran
    with pytest.raises(WarehouseError, match=r"writing the monitoring rows for 2026-11-29 .* earlier rows are"):
        replace_monitoring(engine, table, SCORE_DATE, broken)
    stored = _stored(engine, table)
    assert stored["run_id"].tolist() == ["run-a"] * 3


def test_a_metric_that_cannot_be_computed_is_stored_as_null(monitoring):
    engine, table = monitoring
    rows = metric_rows([Metric("missing_rate", "tenure", None, reference_value=0.0)], "r", "3", datetime.now(UTC))
    replace_monitoring(engine, table, SCORE_DATE, rows)
    stored = _stored(engine, table)
    assert stored["value"].isna().all() and stored["drifted"].isna().all()


def _result(tmp_path, *, drifted: dict[str, float]):
    from churn.handoffs import MonitorResult

    run = run_context(tmp_path)
    return MonitorResult(
        run=run,
        model_version="3",
        reference_path="file:///runs/x/features/training.parquet",
        reference_mlflow_run_id="abc",
        table="churn_monitoring",
        rows_written=3,
        report=run.run_dir / "monitoring" / "report.html",
        drifted_features=drifted,
        prediction_psi=0.02,
        feature_psi_threshold=0.25,
        prediction_psi_threshold=0.1,
        realised_roc_auc=None,
        realised_auc_score_date=None,
        realised_auc_customers=0,
        retraining_requested=bool(drifted),
        retraining_reason="retraining requested: MonthlyCharges PSI 0.410 > 0.25" if drifted else "none",
    )


def test_the_report_is_one_self_contained_page_with_drifted_rows_highlighted(tmp_path):
    metrics = [
        Metric("feature_psi", "MonthlyCharges", 0.41, threshold=0.25),
        Metric("feature_psi", "tenure", 0.02, threshold=0.25),
        Metric("unseen_category_share", "Contract", 0.1, reference_value=0.0, detail="unseen: Four year"),
        Metric("missing_rate", "TotalCharges", 0.002, reference_value=0.001),
        Metric("prediction_psi", None, 0.02, threshold=0.1),
    ]
    page = render_report(_result(tmp_path, drifted={"MonthlyCharges": 0.41}), metrics)
    assert page.count("<table>") == 4  # input drift, unseen categories, missing values, predictions
    assert page.count('<tr class="drifted">') == 1
    assert '<tr class="drifted"><td>feature_psi</td><td>MonthlyCharges</td><td class="number">0.4100' in page
    assert "Drift above the thresholds" in page and "No customer scored" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page and "<link" not in page
    calm = render_report(_result(tmp_path, drifted={}), metrics[1:2])
    assert "No drift above the thresholds." in calm and 'class="drifted"' not in calm


def test_drift_asks_for_retraining_unless_drift_started_the_run():
    config = MonitoringConfig()
    assert retraining_decision({"MonthlyCharges": 0.41}, 0.02, config, False, 5_000) == (
        True,
        "retraining requested: MonthlyCharges PSI 0.410 > 0.25",
    )
    assert retraining_decision({}, 0.12, config, False, 5_000)[0] is True
    requested, reason = retraining_decision({"MonthlyCharges": 0.41}, 0.02, config, True, 5_000)
    assert not requested and "this run was itself started by drift" in reason
    assert retraining_decision({}, 0.1, config, False, 5_000) == (
        False,
        "no retraining requested: no drift above the thresholds",
    )


def test_too_few_scored_customers_never_ask_for_retraining():
    config = MonitoringConfig(min_rows_to_judge=500)
    requested, reason = retraining_decision({"MonthlyCharges": 8.7}, 9.1, config, False, 1)
    assert not requested
    assert reason == (
        "no retraining requested: too few scored customers to judge drift (1, fewer than "
        "monitoring.min_rows_to_judge 500): MonthlyCharges PSI 8.700 > 0.25; prediction PSI 9.100 > 0.1"
    )
    assert retraining_decision({"MonthlyCharges": 0.41}, 0.02, config, False, 499)[0] is False
    assert retraining_decision({"MonthlyCharges": 0.41}, 0.02, config, False, 500)[0] is True


def test_the_drift_event_names_the_drifted_features_and_their_psi(tmp_path):
    extra = _result(tmp_path, drifted={"MonthlyCharges": 0.41}).drift_event_extra()
    assert extra["drifted_features"] == {"MonthlyCharges": 0.41}
    assert extra["score_date"] == "2026-11-29" and extra["thresholds"] == {
        "feature_psi": 0.25,
        "prediction_psi": 0.1,
    }


def _scored_with_shift(trained_run, tmp_path, shifts: dict[str, str]):
    """The trained run's model registered and scoring its scoring features with ``shifts``
    applied (see churn.generate.shift_features), in a warehouse of the test's own."""
    import mlflow

    from churn.generate import shift_features
    from churn.score import run_score
    from churn.storage import read_parquet, write_parquet_atomically
    from churn.tracking import use_mlflow
    from tests.unit.test_score import _packaged

    config = trained_run.settings.config
    settings = trained_run.settings.overridden(
        warehouse_url=f"sqlite:///{tmp_path / 'warehouse.db'}",
        config=config.model_copy(update={"registered_model": f"churn-classifier-{uuid.uuid4().hex[:8]}"}),
    )
    use_mlflow(settings)
    version = str(mlflow.register_model(trained_run.trained.model_uri, settings.config.registered_model).version)
    run = run_context(tmp_path / "run")
    scoring = shift_features(read_parquet(trained_run.features.scoring_path), shifts, np.random.default_rng(5))
    features = trained_run.features.model_copy(
        update={"run": run, "scoring_path": write_parquet_atomically(scoring, tmp_path / "scoring.parquet")}
    )
    scored = run_score(features, _packaged(run, promoted=True, version=version), settings)
    return features, scored, settings


def test_monitoring_a_drifted_date_writes_its_rows_and_report_and_asks_for_retraining(trained_run, tmp_path):
    from churn.manifest import read_manifests
    from churn.monitor import run_monitor

    features, scored, settings = _scored_with_shift(trained_run, tmp_path, {"MonthlyCharges": "+40"})
    result = run_monitor(features, scored, settings=settings)

    assert result.reference_path == str(trained_run.features.training_path)
    assert result.reference_mlflow_run_id == trained_run.trained.mlflow_run_id
    assert "MonthlyCharges" in result.drifted_features and result.drifted_features["MonthlyCharges"] > 0.25
    assert "tenure" not in result.drifted_features
    assert result.retraining_requested and "MonthlyCharges PSI" in result.retraining_reason
    assert read_manifests(features.run.run_dir)["monitor"] == result
    engine = warehouse_engine(settings.warehouse_url)
    table = monitoring_table(sa.MetaData(), "churn_monitoring", None)
    stored = _stored(engine, table)
    engine.dispose()
    assert len(stored) == result.rows_written and set(stored["score_date"]) == {SCORE_DATE}
    assert {"feature_psi", "missing_rate", "unseen_category_share", "prediction_psi", "risk_band_share"} <= set(
        stored["metric"]
    )
    psi = stored[stored["metric"] == "feature_psi"].set_index("feature")
    assert bool(psi.loc["MonthlyCharges", "drifted"]) and not bool(psi.loc["tenure", "drifted"])
    page = result.report.read_text()
    assert "MonthlyCharges" in page and 'class="drifted"' in page

    # A run started by drift measures the same, and asks for nothing.
    retraining = features.run.model_copy(update={"drift_triggered": True})
    again = run_monitor(features.model_copy(update={"run": retraining}), scored, settings=settings)
    assert again.drifted_features == result.drifted_features and not again.retraining_requested
