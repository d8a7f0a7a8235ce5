"""Task logs: each phase's short account of what it did, in words, and no library chatter.

Airflow shows a task's INFO lines; :func:`churn.manifest.run_phase` logs each step's
summary there, and ``churn`` quiets Great Expectations' import-time INFO lines.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from churn.handoffs import LandedSnapshot, ScoredPartition, ScoringPartition, shrinkage, summary
from churn.logs import QUIETED_LOGGERS
from churn.manifest import run_phase
from tests.conftest import PROJECT_DIR, run_context
from tests.unit.test_manifest import _records

PASSWORD = "s3cret-pw"


@pytest.fixture
def records(tmp_path: Path) -> dict:
    return _records(run_context(tmp_path))


def _partition(records: dict, first_row: int = 0, end_row: int = 5000) -> ScoringPartition:
    run = records["ingest"].run
    return ScoringPartition(
        run=run,
        index=0,
        partitions=1,
        first_row=first_row,
        end_row=end_row,
        features_path=run.run_dir / "features" / "scoring.parquet",
        model_name="churn-classifier",
        model_version="3",
        model_chosen_because="this run promoted it to 'champion'",
        model_run_id="mlflow-run-3",
        training_fingerprint="fingerprint-3",
        version_seen_for_date=None,
        staging_key="k1",
    )


def test_each_phase_says_what_it_did(records: dict, tmp_path: Path):
    # The first promotion: package registers it, and the alias moves only once score publishes.
    records["package"] = records["package"].model_copy(update={"champion_version": None})
    lines = {phase: summary(record) for phase, record in records.items()}
    assert lines["ingest"] == (
        "ingest: landed the training snapshot from /d/training.csv (csv, 10 bytes, sha256 000000000000) and the "
        f"scoring snapshot from /d/scoring.csv (csv, 10 bytes, sha256 000000000000) in file://{tmp_path}"
    )
    assert lines["validate"] == (
        "validate: training snapshot (3,000 rows) passed 40 expectations, scoring snapshot (600 rows) passed 38, "
        f"of contract telco_churn; report file://{tmp_path}/data_docs/index.html"
    )
    assert lines["feature"] == (
        "feature: added 1 derived feature (tenure_band) to the training and scoring tables; "
        "no category in scoring is unseen in training"
    )
    assert lines["train"] == (
        "train: logistic_regression chosen by CV ROC AUC 0.840 among 1 family in 4 s (5-fold on 2,400 rows); "
        "trained on 2,400 rows, 600 rows held out for evaluate; MLflow run r1"
    )
    assert lines["evaluate"] == (
        "evaluate: test ROC AUC 0.830 (no champion to compare); decision: promote (no champion yet)"
    )
    assert lines["package"] == (
        "package: registered churn-classifier version 1 (a new refit); "
        "no version is champion; version 1 is promoted: it becomes champion once score publishes the date"
    )
    assert lines["score"] == (
        "score.publish: 600 rows for 2026-11-29 in churn_scores at sqlite:///warehouse.db "
        "(high 100, low 300, medium 200), model version 1, from 1 partition"
    )


def test_the_accounts_follow_what_happened(records: dict):
    """Sampling, unseen categories, a kept champion and a reused version are said in words."""
    trained = records["train"].model_copy(update={"train_rows_available": 600_000, "train_rows": 500_000})
    assert "trained on 500,000 rows (a sample of 600,000)" in summary(trained)
    features = records["feature"].model_copy(
        update={"derived_features": ["tenure_band", "services"], "unseen_categories": {"Contract": ["Weekly"]}}
    )
    assert "added 2 derived features (tenure_band, services)" in summary(features)
    assert summary(features).endswith("scoring has values unseen in training in Contract")
    assert summary(features.model_copy(update={"derived_features": []})).startswith(
        "feature: added no derived features to the training and scoring tables"
    )
    kept = records["evaluate"].model_copy(
        update={
            "champion_version": "2",
            "champion_test_roc_auc": 0.85,
            "challenger_comparison_roc_auc": 0.82,
            "comparison_rows": 480,
            "comparison_positives": 120,
            "promote": False,
            "reason": "0.82 < 0.85",
        }
    )
    assert summary(kept) == (
        "evaluate: test ROC AUC 0.830 (on 480 rows unseen by champion version 2: challenger 0.820, champion "
        "0.850); decision: keep_champion (0.82 < 0.85)"
    )
    reused = records["package"].model_copy(
        update={"reused_existing_version": True, "promoted": False, "champion_version": "2"}
    )
    assert summary(reused) == (
        "package: registered churn-classifier version 1 (reused: the same refit was registered before); "
        "champion is version 2 (unchanged)"
    )


def test_score_steps_say_what_each_did(records: dict):
    plan = [_partition(records, 0, 1_000_000), _partition(records, 1_000_000, 1_500_000)]
    assert summary(plan) == (
        "score.plan: 2 partitions of 1,500,000 rows for 2026-11-29, scored with churn-classifier version 3 "
        "because this run promoted it to 'champion'"
    )
    staged = ScoredPartition(
        partition=plan[1],
        rows_staged=500_000,
        risk_band_counts={"low": 300_000, "medium": 150_000, "high": 50_000},
    )
    assert summary(staged) == (
        "score.partition rows 1,000,000-1,500,000: staged 500,000 rows scored by churn-classifier version 3 "
        "(low 300,000, medium 150,000, high 50,000)"
    )
    assert summary(["partition 0"]) is None and summary([]) is None and summary(None) is None


def test_run_phase_logs_each_steps_account_at_info(records: dict, caplog: pytest.LogCaptureFixture):
    run = records["ingest"].run
    with caplog.at_level(logging.INFO, logger="churn"):
        run_phase("score", run, lambda: [_partition(records)], finishes=False)
        run_phase("score", run, lambda: records["score"], starts=False)
        run_phase("score", run, lambda: "no account of itself", starts=False, finishes=False)
    logged = [(record.name, record.levelno, record.getMessage()) for record in caplog.records]
    assert [message.split(":")[0] for _, _, message in logged] == ["score.plan", "score.publish"]
    assert {(name, level) for name, level, _ in logged} == {("churn", logging.INFO)}


def test_no_password_reaches_the_log(records: dict, caplog: pytest.LogCaptureFixture):
    run = records["ingest"].run
    landed = records["ingest"].model_copy(
        update={
            "training": LandedSnapshot(
                source=f"https://loader:{PASSWORD}@files.example.com/training.csv",
                path=run.run_dir / "raw" / "training.csv",
                format="csv",
                bytes=10,
                sha256="0" * 64,
            )
        }
    )
    scored = records["score"].model_copy(
        update={"warehouse": f"postgresql://churn:{PASSWORD}@db:5432/churn?sslpassword={PASSWORD}"}
    )
    with caplog.at_level(logging.INFO, logger="churn"):
        run_phase("ingest", run, lambda: landed)
        run_phase("score", run, lambda: scored, starts=False)
    text = caplog.text
    assert PASSWORD not in text
    assert "https://loader:***@files.example.com/training.csv" in text
    assert "postgresql://churn:***@db:5432/churn" in text


# A real validate phase in a fresh interpreter whose logging shows INFO, as Airflow's task log does.
VALIDATE_AT_INFO = """
import logging, sys
from pathlib import Path

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
from churn.generate import make_snapshots, write_snapshots
from churn.settings import load_settings
from churn.validate import run_validate
from tests.conftest import ingest_for, run_parameters

home = Path(sys.argv[1])
files = write_snapshots(make_snapshots(3000, 600, seed=7), home / "sources")
settings = load_settings({"CHURN_HOME": str(home)})
run_validate(ingest_for(settings, run_parameters(files["training"], files["scoring"])), settings)
for name in sys.argv[2:]:
    gx = logging.getLogger(name)
    print("level", name, logging.getLevelName(gx.getEffectiveLevel()), gx.disabled)
    gx.warning("a warning from Great Expectations still shows")
"""


def test_great_expectations_says_nothing_at_info_in_a_real_phase(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-c", VALIDATE_AT_INFO, str(tmp_path), *QUIETED_LOGGERS],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "Skipping registering function" not in output
    assert "Multiple declarations of metric" not in output
    assert "Loading 'datasources'" not in output
    # Airflow's logging (structlog) may format the lines: look for the logger's name and the level.
    lines = output.splitlines()
    assert not [line for line in lines if "great_expectations." in line and ("INFO" in line or "[info" in line)]
    for name in QUIETED_LOGGERS:
        assert f"level {name} WARNING False" in output  # quieted, not disabled
        assert [line for line in lines if name in line and "a warning from Great Expectations still shows" in line]
    assert "validate: training snapshot (3,000 rows) passed" in output  # the phase's own INFO line shows


def test_a_shrinkage_rounds_down_so_only_nothing_left_reads_as_all_of_it():
    assert shrinkage(1, 5_000) == "99.9% fewer"
    assert shrinkage(0, 5_000) == "100.0% fewer"
    assert shrinkage(300, 500) == "40.0% fewer"
    assert shrinkage(1, 500) == "99.8% fewer"
    assert shrinkage(7, 100) == "93.0% fewer"  # 1 - 7/100 in floats is 0.9299…
