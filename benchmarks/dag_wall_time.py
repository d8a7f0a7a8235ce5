"""Wall time of the whole DAG through Airflow, at several numbers of scoring customers.

Each size gets fresh generated snapshots (20,000 training customers), a fresh Airflow
metadata database and MLflow store, and one run of the real DAG file by ``dag.test()``
(``scripts/run_demo.py``, the demo's own path): Airflow runs every task, the mapped
scoring partitions included, one after the other in one process. Scores go to the
PostgreSQL warehouse given by ``--postgres-url`` (the warehouse the DAG's scale is for),
else to the embedded SQLite default.

    .venv/bin/python benchmarks/dag_wall_time.py --postgres-url postgresql+psycopg://... 100000 1000000

``make bench-dag`` runs it at 100,000, 1,000,000 and 10,000,000 customers. The table is printed
and appended to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measuring import machine, publish

PROJECT = Path(__file__).resolve().parents[1]
TRAINING_CUSTOMERS = 20_000
SCORE_DATE = "2026-11-29"


def airflow_connection_uri(sqlalchemy_url: str) -> str:
    """The Airflow Connection URI for a SQLAlchemy PostgreSQL URL (Airflow names the type ``postgres``)."""
    return "postgres://" + sqlalchemy_url.split("://", 1)[1]


def run_dag(customers: int, postgres_url: str | None) -> float:
    """Seconds the DAG takes through Airflow on fresh snapshots of ``customers`` scoring customers."""
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory(prefix="churn-dag-") as folder:
        workdir = Path(folder)
        env = {
            **os.environ,
            "CHURN_HOME": str(workdir / "home"),
            "AIRFLOW_HOME": str(workdir / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "GX_ANALYTICS_ENABLED": "false",
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
        }
        for inherited in ("MLFLOW_TRACKING_URI", "CHURN_WAREHOUSE_URL", "AIRFLOW_CONN_CHURN_WAREHOUSE"):
            env.pop(inherited, None)
        if postgres_url:
            env["AIRFLOW_CONN_CHURN_WAREHOUSE"] = airflow_connection_uri(postgres_url)
        sources = workdir / "home" / "sources"  # CHURN_HOME/sources: ingest reads files only there
        subprocess.run(
            [
                bin_dir / "churn-generate",
                *("--out", sources),
                *("--training-rows", str(TRAINING_CUSTOMERS)),
                *("--scoring-rows", str(customers)),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run([bin_dir / "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
        start = time.perf_counter()
        done = subprocess.run(
            [
                *(sys.executable, PROJECT / "scripts" / "run_demo.py", "--score-date", SCORE_DATE),
                *("--conf", f"training_source={sources / 'training.csv'}"),
                *("--conf", f"scoring_source={sources / 'scoring.csv'}"),
            ],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if done.returncode:
            sys.exit(f"the DAG failed at {customers:,} customers:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--postgres-url", help="SQLAlchemy URL of a PostgreSQL database for the scores")
    args = parser.parse_args()
    seconds = {customers: run_dag(customers, args.postgres_url) for customers in args.sizes}
    smallest = args.sizes[0]
    warehouse = "PostgreSQL" if args.postgres_url else "SQLite"
    lines = [
        f"The whole DAG through Airflow (`dag.test()`, tasks one after the other), {TRAINING_CUSTOMERS:,} "
        f"training customers, {warehouse} warehouse, {machine()}:",
        "",
        f"| scoring customers | seconds | minutes | times the {smallest:,} run |",
        "|---|---|---|---|",
        *(
            f"| {customers:,} | {taken:.0f} | {taken / 60:.1f} | {taken / seconds[smallest]:.1f} |"
            for customers, taken in seconds.items()
        ),
    ]
    publish("Whole DAG wall time through Airflow (`make bench-dag`)", "\n".join(lines))


if __name__ == "__main__":
    main()
