"""Shared fixtures and helpers. Every test runs against throwaway state, never the developer's .churn."""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]
SCORE_DATE = date(2026, 11, 29)
# The RACI table, restated independently of raci.yaml so a wrong edit there fails here.
EXPECTED_OWNERS = {
    "ingest": "data_engineer",
    "validate": "data_engineer",
    "feature": "data_scientist",
    "train": "data_scientist",
    "evaluate": "data_scientist",
    "package": "ml_engineer",
    "score": "mlops_engineer",
    "monitor": "mlops_engineer",
}
# Tasks that are a step of a phase without being its task: the approval gate belongs to Model Evaluation.
_SESSION_STATE = Path(tempfile.mkdtemp(prefix="churn-tests-"))


# Set before anything imports Airflow, so Airflow reads this configuration and no other.
# Session-wide on purpose (a test that changes one uses monkeypatch, which restores it).
os.environ["AIRFLOW_HOME"] = str(_SESSION_STATE / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_DIR / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["CHURN_HOME"] = str(_SESSION_STATE / "churn")
os.environ["GX_ANALYTICS_ENABLED"] = "false"
# Where the developer's own setup would point the pipeline: never inherited by a test.
INHERITED_SETTINGS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "CHURN_WAREHOUSE_URL",
    "CHURN_PIPELINE_CONFIG",
    "AIRFLOW_CONN_CHURN_WAREHOUSE",
    "AIRFLOW_CONN_CHURN_MLFLOW",
    "AIRFLOW_CONN_CHURN_SOURCE",
    "CHURN_RUNS_BASE",
)
for inherited in INHERITED_SETTINGS:
    os.environ.pop(inherited, None)
# Tests write their snapshots in temporary folders: ingest may read files there (set, not
# inherited, and passed on to the Airflow processes the tests start).
os.environ["CHURN_SOURCE_ROOTS"] = tempfile.gettempdir()


@pytest.fixture
def churn_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CHURN_HOME: its own SQLite warehouse and MLflow store."""
    home = tmp_path / "churn_home"
    monkeypatch.setenv("CHURN_HOME", str(home))
    # mlflow.set_tracking_uri and set_registry_uri export these; another test's store must not leak in.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return home


@pytest.fixture
def settings(churn_home: Path):
    from churn.settings import load_settings

    return load_settings()


@pytest.fixture(scope="session")
def contract():
    from churn.contract import load_contract

    return load_contract("telco_churn")


@pytest.fixture(scope="session")
def snapshots():
    """A small generated population: big enough to train on, quick to validate."""
    from churn.generate import make_snapshots

    return make_snapshots(3000, 600, seed=7)


@pytest.fixture
def source_files(tmp_path: Path, snapshots) -> dict[str, Path]:
    """The snapshots written as the public data set's CSV text."""
    from churn.generate import write_snapshots

    return write_snapshots(snapshots, tmp_path / "sources")


def write_csv(frame, path: Path) -> Path:
    """A test's own (possibly broken) snapshot, written as CSV text the way users' files arrive."""
    from churn.generate import as_public_csv_text

    path.parent.mkdir(parents=True, exist_ok=True)
    as_public_csv_text(frame).to_csv(path, index=False)
    return path


def land(path: Path, run_dir: Path, name: str, *, labelled: bool = True):
    """Land a file as ingest does and describe it as validation receives it."""
    from churn.ingest import land_snapshot
    from churn.sources import parse_source
    from churn.validate import Snapshot

    landed = land_snapshot(parse_source(str(path)), run_dir / "raw", name)
    return Snapshot(name, landed.path, landed.format, labelled=labelled, source=landed.source)


def validate_training(frame, contract, run_dir: Path):
    """Validate ``frame`` as the run's only (training) snapshot."""
    from churn.validate import validate_snapshots

    return validate_snapshots(
        [land(write_csv(frame, run_dir / "training.csv"), run_dir, "training")], contract, run_dir
    )


def quick_settings(settings):
    """``settings`` with every model family kept but made small, each with a small search
    whose budget never binds (so a rerun chooses alike), so a test trains in seconds."""
    from churn.settings import (
        CandidatesConfig,
        ExtraTreesParams,
        ExtraTreesSpace,
        HistGradientBoostingParams,
        HistGradientBoostingSpace,
        LogisticRegressionParams,
        LogisticRegressionSpace,
        RandomForestParams,
        RandomForestSpace,
        SearchConfig,
        SearchSpacesConfig,
    )

    training = settings.config.training.model_copy(
        update={
            "cv_folds": 3,
            "candidates": CandidatesConfig(
                logistic_regression=LogisticRegressionParams(),
                hist_gradient_boosting=HistGradientBoostingParams(max_iter=30),
                random_forest=RandomForestParams(n_estimators=20, max_depth=6, min_samples_leaf=10),
                extra_trees=ExtraTreesParams(n_estimators=20, max_depth=6, min_samples_leaf=10),
            ),
            "search": SearchConfig(
                time_budget_seconds=3600,
                max_candidates=3,
                spaces=SearchSpacesConfig(
                    logistic_regression=LogisticRegressionSpace(C={"low": 0.01, "high": 10.0, "log": True}),
                    hist_gradient_boosting=HistGradientBoostingSpace(max_leaf_nodes=[7, 15, 31]),
                    random_forest=RandomForestSpace(min_samples_leaf=[5, 10, 40]),
                    extra_trees=ExtraTreesSpace(min_samples_leaf=[5, 10, 40]),
                ),
            ),
        }
    )
    return settings.overridden(config=settings.config.model_copy(update={"training": training}))


def run_parameters(training: Path | str, scoring: Path | str, score_date: date = SCORE_DATE) -> dict:
    """The trigger parameters of a run, as Airflow hands them to ``ingest``."""
    return {
        "training_source": str(training),
        "scoring_source": str(scoring),
        "contract": "telco_churn",
        "score_date": score_date.isoformat(),
    }


def ingest_for(settings, params: dict, run_type: str = "manual"):
    """``ingest`` as the DAG's task calls it, for a run of ``run_type`` on the date in ``params``."""
    from churn.ingest import run_ingest

    return run_ingest(
        params,
        airflow_run_id=f"{run_type}__{params['score_date']}T02:00:00+00:00",
        logical_date=None,
        run_after=datetime(2026, 11, 29, 2, tzinfo=UTC),
        settings=settings,
    )


@dataclass(frozen=True)
class TrainedRun:
    """The records of one real pass of ingest, validate, feature and train, and its settings."""

    landed: object
    validated: object
    features: object
    trained: object
    settings: object


def train_a_run(home: Path, snapshots) -> TrainedRun:
    """A real pass of ingest, validate, feature and train in state of its own under ``home``,
    on ``snapshots``, with a small model."""
    from churn.feature import run_feature
    from churn.generate import write_snapshots
    from churn.settings import load_settings
    from churn.train import run_train
    from churn.validate import run_validate

    settings = quick_settings(load_settings({"CHURN_HOME": str(home)}))
    files = write_snapshots(snapshots, home / "sources")
    landed = ingest_for(settings, run_parameters(files["training"], files["scoring"]))
    validated = run_validate(landed, settings)
    features = run_feature(validated)
    return TrainedRun(landed, validated, features, run_train(features, settings), settings)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, snapshots) -> TrainedRun:
    """One real pass up to training, shared by the tests that only read what it made."""
    return train_a_run(tmp_path_factory.mktemp("trained_run"), snapshots)


def run_context(run_dir: Path):
    """A run's context for ``SCORE_DATE`` in ``run_dir``, for tests that build phase results by hand."""
    from churn.handoffs import RunContext

    return RunContext(
        airflow_run_id="manual__2026-11-29T02:00:00+00:00",
        score_date=SCORE_DATE,
        run_dir=run_dir,
        contract="telco_churn",
    )


def free_port() -> int:
    """A loopback port nothing listens on at the moment: closed to a client, free for a server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def score_rows(ids, *, probability=0.5, version="1", band="medium"):
    """Rows as ``score`` writes them to the warehouse, for ``ids``."""
    import pandas as pd

    return pd.DataFrame(
        {
            "customer_id": list(ids),
            "churn_probability": probability,
            "risk_band": band,
            "model_name": "churn-classifier",
            "model_version": version,
            "run_id": f"run-{version}",
            "scored_at": datetime(2026, 11, 29, 2, tzinfo=UTC),
            "model_run_id": f"mlflow-run-of-version-{version}",
            "training_fingerprint": f"fingerprint-of-version-{version}",
        }
    )


def stored_scores(url: str, score_date: date | None = None):
    """What the warehouse's scores table holds (for one date, if given), ordered by date and customer."""
    import pandas as pd
    import sqlalchemy as sa

    from churn.warehouse import scores_table, warehouse_engine

    engine = warehouse_engine(url)
    table = scores_table(sa.MetaData(), "churn_scores", None)
    query = sa.select(table).order_by(table.c.score_date, table.c.customer_id)
    if score_date is not None:
        query = query.where(table.c.score_date == score_date)
    try:
        with engine.connect() as connection:
            return pd.read_sql(query, connection)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL database for warehouse tests; .ci/run starts one and always sets this."""
    url = os.environ.get("CHURN_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CHURN_TEST_POSTGRES_URL is unset in CI: .ci/run must start PostgreSQL")
        pytest.skip("PostgreSQL tests SKIPPED: set CHURN_TEST_POSTGRES_URL (see .ci/run) to run them")
    return url
