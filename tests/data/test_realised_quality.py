"""The realised ROC AUC of earlier scores, through the real phases: a date's scores are written,
then a later date's training snapshot labels the customers scored then (their outcome has
arrived), and that run's monitoring measures how well the earlier scores ranked them."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.metrics import roc_auc_score

from churn.generate import make_snapshots, write_snapshots
from churn.manifest import read_manifests
from churn.settings import CandidatesConfig, LogisticRegressionParams, load_settings
from churn.warehouse import warehouse_engine
from tests.conftest import stored_scores
from tests.faults.test_backfill import run_pipeline

EARLIER, LATER = date(2026, 11, 20), date(2026, 11, 27)


def one_quick_model(settings):
    """``settings`` training one small family without a search: what is tested here is
    monitoring's join of later labels with earlier scores, not the choice of model."""
    training = settings.config.training.model_copy(
        update={
            "cv_folds": 3,
            "candidates": CandidatesConfig(logistic_regression=LogisticRegressionParams()),
            "search": None,
        }
    )
    return settings.overridden(config=settings.config.model_copy(update={"training": training}))


def test_a_later_snapshot_labelling_earlier_scored_customers_measures_their_realised_roc_auc(tmp_path):
    settings = one_quick_model(load_settings({"CHURN_HOME": str(tmp_path)}))
    earlier = make_snapshots(1500, 600, seed=31)
    write_snapshots(earlier, settings.sources_dir / EARLIER.isoformat())
    first = run_pipeline(settings, EARLIER, "scheduled")
    # A week on, the outcome of every customer scored on EARLIER is known.
    later = make_snapshots(1500, 600, seed=32, earlier_scoring=earlier.scoring)
    write_snapshots(later, settings.sources_dir / LATER.isoformat())
    second = run_pipeline(settings, LATER, "scheduled")

    assert read_manifests(first.scored.run.run_dir)["monitor"].realised_roc_auc is None
    monitored = read_manifests(second.scored.run.run_dir)["monitor"]
    # The same figure, joined here from the warehouse's scores of EARLIER and the labels.
    scores = stored_scores(settings.warehouse_url, EARLIER)
    outcomes = later.training[["customerID", "Churn"]].rename(columns={"customerID": "customer_id"})
    joined = scores.merge(outcomes, on="customer_id")
    assert len(joined) == len(earlier.scoring) == 600
    expected = roc_auc_score(joined["Churn"] == "Yes", joined["churn_probability"])
    assert monitored.realised_auc_score_date == EARLIER and monitored.realised_auc_customers == 600
    assert monitored.realised_roc_auc == pytest.approx(expected, abs=1e-4)
    assert 0.6 < expected < 1.0  # the scores ranked the churners: a measure of real quality

    engine = warehouse_engine(settings.warehouse_url)
    with engine.connect() as connection:
        stored = pd.read_sql(
            sa.text("SELECT score_date, value, detail FROM churn_monitoring WHERE metric = 'realised_roc_auc'"),
            connection,
        )
    engine.dispose()
    (row,) = stored.itertuples()
    assert str(row.score_date)[:10] == LATER.isoformat() and row.value == pytest.approx(expected)
    assert row.detail == f"scores of {EARLIER} for 600 customers this run's training snapshot labels"
    page = monitored.report.read_text()
    assert "Realised quality of earlier scores" in page and f"scores of {EARLIER} for 600 customers" in page
    assert "No customer scored on an earlier date" not in page
