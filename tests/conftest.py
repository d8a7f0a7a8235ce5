"""Shared fixtures. Every test runs against throwaway state, never the developer's .churn."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parents[1]
# The RACI table, restated independently of raci.yaml so a wrong edit there fails here.
EXPECTED_OWNERS = {
    "ingest": "data_engineer",
    "validate": "data_engineer",
    "feature": "data_scientist",
    "train": "data_scientist",
    "evaluate": "data_scientist",
    "package": "ml_engineer",
    "score": "mlops_engineer",
}
_SESSION_STATE = Path(tempfile.mkdtemp(prefix="churn-tests-"))

# Set before anything imports Airflow, so Airflow reads this configuration and no other.
os.environ["AIRFLOW_HOME"] = str(_SESSION_STATE / "airflow")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(PROJECT_DIR / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["CHURN_HOME"] = str(_SESSION_STATE / "churn")
os.environ["GX_ANALYTICS_ENABLED"] = "false"
for inherited in ("MLFLOW_TRACKING_URI", "CHURN_WAREHOUSE_URL", "AIRFLOW_CONN_CHURN_WAREHOUSE"):
    os.environ.pop(inherited, None)


@pytest.fixture
def churn_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CHURN_HOME: its own SQLite warehouse and MLflow store."""
    home = tmp_path / "churn_home"
    monkeypatch.setenv("CHURN_HOME", str(home))
    # mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI; another test's store must not leak in.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, snapshots):
    """One real pass of ingest, validate, feature and train on small data, in its own state."""
    from datetime import date

    from churn.feature import run_feature
    from churn.generate import write_snapshots
    from churn.ingest import run_ingest
    from churn.settings import load_settings
    from churn.train import run_train
    from churn.validate import run_validate

    home = tmp_path_factory.mktemp("trained_run")
    settings = load_settings({"CHURN_HOME": str(home)})
    files = write_snapshots(snapshots, home / "sources")
    run = run_ingest(
        settings,
        airflow_run_id="manual__2026-11-29T02:00:00+00:00",
        score_date=date(2026, 11, 29),
        training_source=str(files["training"]),
        scoring_source=str(files["scoring"]),
        contract="telco_churn",
        connection_url=lambda conn_id: None,
    )
    return run_train(run_feature(run_validate(run)), settings), settings


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL database for warehouse tests; .ci/run starts one and always sets this."""
    url = os.environ.get("CHURN_TEST_POSTGRES_URL")
    if not url:
        if os.environ.get("CI"):
            pytest.fail("CHURN_TEST_POSTGRES_URL is unset in CI: .ci/run must start PostgreSQL")
        pytest.skip("PostgreSQL tests SKIPPED: set CHURN_TEST_POSTGRES_URL (see .ci/run) to run them")
    return url
