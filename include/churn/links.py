"""Where people look at a run: the addresses of the Airflow and MLflow UIs, and of the MLflow
pages of a run and of a model version. The demo's summary and the roles page build their
links here, so both open the same views."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote

# MLflow's UI shows the view the link names (else the one last chosen, GenAI at first): its
# "Model training" view has the runs, their plots and the model registry.
MLFLOW_VIEW = "?workflowType=machine_learning"


def ui_url(port_variable: str, default_port: int, environ: Mapping[str, str] | None = None) -> str:
    """Where `make airflow` or `make mlflow` serves its UI: the Makefile's UI_HOST and port
    variables, which it exports; a UI on every interface (0.0.0.0) is reached on loopback too."""
    environ = os.environ if environ is None else environ
    host = environ.get("UI_HOST") or "127.0.0.1"
    if host in {"0.0.0.0", "::"}:
        host = "127.0.0.1"
    return f"http://{host}:{environ.get(port_variable) or default_port}"


def mlflow_ui_url(environ: Mapping[str, str] | None = None) -> str:
    """The MLflow UI people open: ``CHURN_MLFLOW_UI_URL`` (a tracking server's public address),
    else where `make mlflow` serves it."""
    environ = os.environ if environ is None else environ
    return (environ.get("CHURN_MLFLOW_UI_URL") or ui_url("MLFLOW_PORT", 5000, environ)).rstrip("/")


def mlflow_run_url(mlflow_ui: str, experiment_id: str, run_id: str) -> str:
    """The MLflow run's page, in the machine learning view."""
    return f"{mlflow_ui}/#/experiments/{quote(experiment_id, safe='')}/runs/{quote(run_id, safe='')}{MLFLOW_VIEW}"


def model_version_url(mlflow_ui: str, model_name: str, version: str) -> str:
    """The registered model version's page, in the machine learning view."""
    return f"{mlflow_ui}/#/models/{quote(model_name, safe='')}/versions/{quote(version, safe='')}{MLFLOW_VIEW}"


def experiments_url(mlflow_ui: str) -> str:
    """The MLflow UI's list of experiments, in the machine learning view."""
    return f"{mlflow_ui}/#/experiments{MLFLOW_VIEW}"
