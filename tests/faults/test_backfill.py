"""Reruns and backfills of past dates, through every phase of the real pipeline code.

After a later date has promoted a newer champion, a backfill of an earlier date must score
with the version that scored that date before and must not move the champion back.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from churn.evaluate import run_evaluate
from churn.feature import run_feature
from churn.generate import make_snapshots, write_snapshots
from churn.ingest import run_ingest
from churn.package import run_package
from churn.report import summarize_run
from churn.score import run_score
from churn.settings import load_settings
from churn.tracking import champion_version, use_mlflow
from churn.train import run_train
from churn.validate import run_validate

EARLY, LATE, NEVER_SCORED = date(2026, 11, 20), date(2026, 11, 28), date(2026, 11, 10)
COMPARED = ["score_date", "customer_id", "churn_probability", "risk_band", "model_name", "model_version"]


def run_pipeline(settings, score_date: date, run_type: str) -> dict:
    """One run of every phase for ``score_date``, as the DAG's tasks would call them, on the
    date's own snapshots: the same source references serve every date."""
    run = run_ingest(
        settings,
        airflow_run_id=f"{run_type}__{score_date}T02:00:00+00:00",
        score_date=score_date,
        training_source=str(settings.sources_dir / "{score_date}" / "training.csv"),
        scoring_source=str(settings.sources_dir / "{score_date}" / "scoring.csv"),
        contract="telco_churn",
        connection_url=lambda conn_id: None,
    )
    trained = run_train(run_feature(run_validate(run)), settings)
    return run_score(run_package(run_evaluate(trained, settings), settings), settings)


def stored_scores(settings, score_date: date) -> pd.DataFrame:
    from churn.warehouse import warehouse_engine

    engine = warehouse_engine(settings.warehouse_url)
    try:
        with engine.connect() as connection:
            frame = pd.read_sql(
                "select * from churn_scores where score_date = ? order by customer_id",
                connection.connection.driver_connection,
                params=(score_date.isoformat(),),
            )
    finally:
        engine.dispose()
    return frame[COMPARED].reset_index(drop=True)


def current_champion(settings) -> str:
    use_mlflow(settings)
    return str(champion_version(settings).version)


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """An early date scored by a model trained on little data, then a later date whose
    model, trained on much more, beats it on the same rows and becomes champion."""
    home = tmp_path_factory.mktemp("backfill")
    settings = load_settings({"CHURN_HOME": str(home)})
    for score_date, snapshots in (
        (NEVER_SCORED, make_snapshots(600, 400, seed=20)),
        (EARLY, make_snapshots(600, 400, seed=21)),
        (LATE, make_snapshots(6000, 400, seed=22)),
    ):
        write_snapshots(snapshots, settings.sources_dir / score_date.isoformat())
    early = run_pipeline(settings, EARLY, "scheduled")
    early_scores = stored_scores(settings, EARLY)
    late = run_pipeline(settings, LATE, "scheduled")
    return settings, early, early_scores, late


def test_a_later_date_promotes_a_better_model(history):
    settings, early, _, late = history
    assert early["package"]["promoted"] and late["package"]["promoted"]
    assert late["package"]["model_version"] != early["package"]["model_version"]
    assert current_champion(settings) == late["package"]["model_version"]


def test_backfill_of_a_scored_date_reproduces_its_scores_and_keeps_the_champion(history):
    settings, early, early_scores, late = history
    backfill = run_pipeline(settings, EARLY, "backfill")

    assert backfill["package"]["reused_existing_version"] is True
    assert backfill["evaluate"]["promote"] is False
    assert "backfills" in backfill["evaluate"]["reason"]
    assert backfill["score"]["model_version"] == early["score"]["model_version"]
    assert "scored 2026-11-20 before" in backfill["score"]["model_chosen_because"]
    summary, finished = summarize_run(Path(backfill["run_dir"]), settings)
    assert finished and f"version {early['score']['model_version']} scored because it scored 2026-11-20" in summary
    pd.testing.assert_frame_equal(stored_scores(settings, EARLY), early_scores)
    assert current_champion(settings) == late["package"]["model_version"]


def test_backfill_of_a_date_never_scored_uses_the_champion_and_does_not_promote(history):
    settings, _, _, late = history
    backfill = run_pipeline(settings, NEVER_SCORED, "backfill")

    assert backfill["package"]["promoted"] is False
    assert backfill["score"]["model_version"] == late["package"]["model_version"]
    assert len(stored_scores(settings, NEVER_SCORED)) == backfill["score"]["rows_written"] == 400
    assert current_champion(settings) == late["package"]["model_version"]


def test_a_rerun_after_a_code_change_keeps_the_dates_version(history, monkeypatch):
    settings, _, _, late = history
    before = stored_scores(settings, LATE)
    # New code gives a new training fingerprint, so the rerun registers a new version.
    monkeypatch.setenv("CHURN_CODE_VERSION", "0.2.0+gnewcode")
    rerun = run_pipeline(settings, LATE, "manual")

    assert rerun["package"]["reused_existing_version"] is False
    assert rerun["package"]["model_version"] != late["package"]["model_version"]
    assert rerun["evaluate"]["promote"] is False and "scored before by version" in rerun["evaluate"]["reason"]
    assert rerun["score"]["model_version"] == late["package"]["model_version"]
    pd.testing.assert_frame_equal(stored_scores(settings, LATE), before)
    assert current_champion(settings) == late["package"]["model_version"]
