"""Reruns and backfills of past dates, through every phase of the real pipeline code.

After a later date has promoted a newer champion, a backfill of an earlier date must score
with the version that scored that date before and must not move the champion back. Such a
run cannot promote, so it skips training, evaluation and packaging: it trains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import mlflow
import pandas as pd
import pytest

from churn.errors import PhaseSkipped
from churn.evaluate import run_evaluate
from churn.feature import run_feature
from churn.generate import make_snapshots, write_snapshots
from churn.handoffs import EvaluateResult, PackageResult, ScoreResult, SkippedPhases
from churn.monitor import run_monitor
from churn.package import run_package
from churn.score import run_score
from churn.settings import load_settings
from churn.tracking import champion_version, use_mlflow
from churn.train import run_train
from churn.validate import run_validate
from scripts.run_report import summarize_run
from tests.conftest import ingest_for, quick_settings, run_parameters, stored_scores

EARLY, LATE, NEVER_SCORED = date(2026, 11, 20), date(2026, 11, 28), date(2026, 11, 10)
COMPARED = ["score_date", "customer_id", "churn_probability", "risk_band", "model_name", "model_version"]


@dataclass(frozen=True)
class PipelineRun:
    """The records of one run's last phases: what was decided, registered and scored, or
    what was skipped and why (then nothing was decided or registered)."""

    skipped: SkippedPhases | None
    evaluated: EvaluateResult | None
    packaged: PackageResult | None
    scored: ScoreResult


def run_pipeline(settings, score_date: date, run_type: str) -> PipelineRun:
    """One run of every phase for ``score_date``, as the DAG's tasks would call them, on the
    date's own snapshots: the same source references serve every date. A skipped train
    skips evaluate and package, and score and monitor go on, as the DAG's trigger rules do."""
    params = run_parameters(
        settings.sources_dir / "{score_date}" / "training.csv",
        settings.sources_dir / "{score_date}" / "scoring.csv",
        score_date,
    )
    validated = run_validate(ingest_for(settings, params, run_type), settings)
    features = run_feature(validated)
    try:
        trained = run_train(features, settings)
    except PhaseSkipped as skip:
        return monitored(
            PipelineRun(skip.skipped, None, None, run_score(features, None, settings)), features, settings
        )
    evaluated = run_evaluate(trained, settings)
    packaged = run_package(validated, trained, evaluated, settings)
    return monitored(
        PipelineRun(None, evaluated, packaged, run_score(features, packaged, settings)), features, settings
    )


def monitored(run: PipelineRun, features, settings) -> PipelineRun:
    """``run`` after its last phase, monitor, as the DAG ends every run that scored."""
    run_monitor(features, run.scored, settings=settings)
    return run


def scores_for(settings, score_date: date) -> pd.DataFrame:
    return stored_scores(settings.warehouse_url, score_date)[COMPARED].reset_index(drop=True)


def current_champion(settings) -> str:
    use_mlflow(settings)
    return str(champion_version(settings).version)


def tracked_runs(settings) -> int:
    """How many MLflow runs exist: every training makes one."""
    use_mlflow(settings)
    return len(mlflow.search_runs(search_all_experiments=True))


def assert_skipped_training(run: PipelineRun, why: str) -> None:
    assert run.skipped is not None and run.skipped.phases == ["train", "evaluate", "package"]
    assert "this run cannot promote" in run.skipped.reason and why in run.skipped.reason
    assert run.evaluated is None and run.packaged is None


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """An early date scored by a model trained on little data, then a later date whose
    model, trained on much more, beats it on the same rows and becomes champion."""
    home = tmp_path_factory.mktemp("backfill")
    settings = quick_settings(load_settings({"CHURN_HOME": str(home)}))
    for score_date, snapshots in (
        (NEVER_SCORED, make_snapshots(600, 400, seed=20)),
        (EARLY, make_snapshots(600, 400, seed=21)),
        (LATE, make_snapshots(6000, 400, seed=22)),
    ):
        write_snapshots(snapshots, settings.sources_dir / score_date.isoformat())
    early = run_pipeline(settings, EARLY, "scheduled")
    early_scores = scores_for(settings, EARLY)
    late = run_pipeline(settings, LATE, "scheduled")
    return settings, early, early_scores, late


def test_a_later_date_promotes_a_better_model(history):
    settings, early, _, late = history
    assert early.skipped is None and late.skipped is None
    assert early.packaged.promoted and late.packaged.promoted
    assert late.packaged.model_version != early.packaged.model_version
    # The premise: on the same test rows the late model beats the early champion.
    assert late.evaluated.champion_version == early.packaged.model_version
    assert late.evaluated.metrics["test_roc_auc"] > late.evaluated.champion_test_roc_auc
    assert current_champion(settings) == late.packaged.model_version


def test_backfill_of_a_scored_date_reproduces_its_scores_and_keeps_the_champion(history):
    settings, early, early_scores, late = history
    runs = tracked_runs(settings)
    backfill = run_pipeline(settings, EARLY, "backfill")

    assert_skipped_training(backfill, f"scored before by version {early.scored.model_version}")
    assert tracked_runs(settings) == runs  # nothing was trained
    assert backfill.scored.model_version == early.scored.model_version
    assert "scored 2026-11-20 before" in backfill.scored.model_chosen_because
    summary, finished = summarize_run(backfill.scored.run.run_dir, settings)
    assert finished and f"version {early.scored.model_version} scored because it scored 2026-11-20" in summary
    assert "skipped    train, evaluate, package: this run cannot promote" in summary and "NOT DONE" not in summary
    pd.testing.assert_frame_equal(scores_for(settings, EARLY), early_scores)
    assert current_champion(settings) == late.packaged.model_version


def test_backfill_of_a_date_never_scored_uses_the_champion_and_does_not_promote(history):
    settings, _, _, late = history
    backfill = run_pipeline(settings, NEVER_SCORED, "backfill")

    assert_skipped_training(backfill, "before 2026-11-28")
    assert backfill.scored.model_version == late.packaged.model_version
    assert len(scores_for(settings, NEVER_SCORED)) == backfill.scored.rows_written == 400
    assert current_champion(settings) == late.packaged.model_version


def test_a_rerun_after_a_code_change_keeps_the_dates_version(history, monkeypatch):
    settings, _, _, late = history
    before = scores_for(settings, LATE)
    # New code would train and register a new version; the rerun trains none and keeps the date's.
    monkeypatch.setenv("CHURN_CODE_VERSION", "0.2.0+gnewcode")
    rerun = run_pipeline(settings, LATE, "manual")

    assert_skipped_training(rerun, f"scored before by version {late.packaged.model_version}")
    assert rerun.scored.model_version == late.packaged.model_version
    pd.testing.assert_frame_equal(scores_for(settings, LATE), before)
    assert current_champion(settings) == late.packaged.model_version
