"""Airflow Connections reach the pipeline whole: the DAG's settings and MLflow's credentials."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy.engine import make_url

from churn.settings import Settings
from tests.conftest import PROJECT_DIR


@pytest.fixture(scope="module")
def dag_module() -> ModuleType:
    """The DAG file loaded as a module, so its helpers run as a task would run them."""
    spec = importlib.util.spec_from_file_location("churn_pipeline_dag", PROJECT_DIR / "dags" / "churn_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_use_mlflow_exports_the_connection_login(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    from churn.tracking import use_mlflow

    # An older login in the environment: the Connection's must win, and monkeypatch restores it.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "stale")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "stale")
    use_mlflow(settings.overridden(mlflow_username="bob", mlflow_password="t0ps3cret"))
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "bob"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "t0ps3cret"


def test_mlflow_uri_connection_gives_the_tracking_uri_and_login(
    dag_module: ModuleType, churn_home: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("AIRFLOW_CONN_CHURN_MLFLOW", "http://user:pa%24%24@mlflow.example:5000")
    settings = dag_module.runtime_settings()
    assert settings.mlflow_tracking_uri == "http://mlflow.example:5000"
    assert (settings.mlflow_username, settings.mlflow_password) == ("user", "pa$$")


@pytest.mark.parametrize(
    "connection",
    [
        "postgres://churn:s3cr3t@db.internal:5432/warehouse?sslmode=require&cursor=dictcursor",
        '{"conn_type": "postgres", "host": "db.internal", "login": "churn", "password": "s3cr3t", "port": 5432, '
        '"schema": "warehouse", "extra": {"sslmode": "require", "cursor": "dictcursor"}}',
    ],
    ids=["uri", "json"],
)
def test_warehouse_connection_extras_reach_the_url(
    dag_module: ModuleType, churn_home: Path, monkeypatch: pytest.MonkeyPatch, connection: str
):
    monkeypatch.setenv("AIRFLOW_CONN_CHURN_WAREHOUSE", connection)
    url = make_url(dag_module.runtime_settings().warehouse_url)
    assert (url.host, url.port, url.database, url.password) == ("db.internal", 5432, "warehouse", "s3cr3t")
    assert dict(url.query) == {"sslmode": "require"}
