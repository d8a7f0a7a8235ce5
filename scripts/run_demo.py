"""Run the churn pipeline once through Airflow (``dag.test``) and print what it did.

Used by ``make demo``. It runs the real DAG file in one process on the configured
defaults, then reads the warehouse table and the MLflow registry to report the results.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"


def ui_url(port_variable: str, default_port: int) -> str:
    """Where `make airflow` or `make mlflow` serves its UI: the Makefile's UI_HOST and port
    variables, which it exports; a UI on every interface (0.0.0.0) is reached on loopback too."""
    host = os.environ.get("UI_HOST") or "127.0.0.1"
    if host in {"0.0.0.0", "::"}:
        host = "127.0.0.1"
    return f"http://{host}:{os.environ.get(port_variable) or default_port}"


PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


def port_setting(port_variable: str, default_port: int) -> str:
    """`` VARIABLE=port`` when the port is not the default, so a printed command serves on it."""
    port = os.environ.get(port_variable)
    return f" {port_variable}={port}" if port and port != str(default_port) else ""


def run_links(settings, airflow_run_id: str, score_date: str) -> list[str]:
    """Where to see this run: its Airflow run, its MLflow run and model version, its data report."""
    from urllib.parse import quote

    import mlflow

    from churn.manifest import read_manifests

    manifests = read_manifests(settings.run_dir(score_date, airflow_run_id))
    airflow, tracking = ui_url("AIRFLOW_PORT", 8080), ui_url("MLFLOW_PORT", 5000)
    links = [f"Airflow run     {airflow}/dags/churn_pipeline/runs/{quote(airflow_run_id, safe='')}"]
    if "train" in manifests:
        run_id = manifests["train"].mlflow_run_id
        experiment = mlflow.get_run(run_id).info.experiment_id
        links.append(f"MLflow run      {tracking}/#/experiments/{experiment}/runs/{run_id}")
    if "package" in manifests:
        packaged = manifests["package"]
        links.append(
            f"model version   {tracking}/#/models/{packaged.model_name}/versions/{packaged.model_version}"
        )
    if "validate" in manifests:
        links.append(f"data report     {manifests['validate'].report}")
    return links


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--score-date", required=True, help="YYYY-MM-DD")
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra trigger parameters, e.g. training_source=/data/train.csv",
    )
    args = parser.parse_args()

    from airflow.dag_processing.dagbag import DagBag
    from run_report import summarize_run

    from churn.airflow_connections import task_settings

    dagbag = DagBag(dag_folder=str(DAGS_FOLDER))
    if dagbag.import_errors:
        print(f"the DAG file does not import: {dagbag.import_errors}", file=sys.stderr)
        return 1
    dag = dagbag.dags["churn_pipeline"]
    conf = {"score_date": args.score_date, **dict(item.split("=", 1) for item in args.conf)}
    dag_run = dag.test(run_conf=conf)

    settings = task_settings(warehouse=True, mlflow=True)
    summary, finished = summarize_run(settings.run_dir(args.score_date, dag_run.run_id), settings)
    print(f"\n=== churn_pipeline run {dag_run.run_id}: {dag_run.state} ===")
    print(summary)
    succeeded = finished and str(dag_run.state) in {"success", "DagRunState.SUCCESS"}
    if not succeeded:
        print("\nNothing after the failed phase ran; earlier scores and the champion are untouched.")
        return 1
    print("\nLinks (once `make airflow` and `make mlflow` serve them):")
    for line in run_links(settings, dag_run.run_id, args.score_date):
        print(f"  {line}")
    password_file = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / PASSWORD_FILE
    login = (
        f"user admin; the password is in {password_file}"
        if password_file.is_file()
        else "user admin; its first start writes the password to a file and prints where"
    )
    print(
        "\nNext:\n"
        f"  make airflow{port_setting('AIRFLOW_PORT', 8080)}   the Airflow UI at "
        f"{ui_url('AIRFLOW_PORT', 8080)} ({login})\n"
        f"  make mlflow{port_setting('MLFLOW_PORT', 5000)}    the MLflow UI at {ui_url('MLFLOW_PORT', 5000)} "
        "(experiments, the churn-classifier registry)\n"
        f"  make scores SCORE_DATE={args.score_date}   what the warehouse holds for the date"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
