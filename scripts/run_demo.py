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
    from sqlalchemy.engine import make_url

    from churn.airflow_connections import task_settings
    from churn.settings import redact_url

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
    query = f"select risk_band, count(*) from {settings.config.warehouse.table} group by 1"
    reader = (
        f'sqlite3 {make_url(settings.warehouse_url).database} "{query}"'
        if settings.warehouse_url.startswith("sqlite")
        else f"psql on {redact_url(settings.warehouse_url)}: {query}"
    )
    print(
        "\nNext:\n"
        f"  make airflow   Airflow UI at {ui_url('AIRFLOW_PORT', 8080)} (user admin; the password is in "
        f"{Path(os.environ.get('AIRFLOW_HOME', '~/airflow')) / 'simple_auth_manager_passwords.json.generated'})\n"
        f"  make mlflow    MLflow UI at {ui_url('MLFLOW_PORT', 5000)} "
        "(experiments, the churn-classifier registry)\n"
        f"  {reader}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
