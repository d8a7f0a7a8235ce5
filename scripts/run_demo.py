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
        "  make airflow   Airflow UI at http://localhost:8080 (user admin; the password is in "
        f"{Path(os.environ.get('AIRFLOW_HOME', '~/airflow')) / 'simple_auth_manager_passwords.json.generated'})\n"
        "  make mlflow    MLflow UI at http://localhost:5000 (experiments, the churn-classifier registry)\n"
        f"  {reader}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
