"""A deployment for running the real DAG through ``airflow dags test``: its own Airflow home,
metadata database, MLflow store, SQLite warehouse and generated snapshots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from churn.settings import Settings, load_settings
from tests.conftest import INHERITED_SETTINGS, PROJECT_DIR, SCORE_DATE, stored_scores

BIN = Path(sys.executable).parent
# End-to-end runs test the pipeline through Airflow, not how well a search tunes (the unit
# tier searches every family): model selection gets a few seconds, in which every family's
# configured hyperparameters still compete.
E2E_SELECTION_BUDGET_SECONDS = 5


def e2e_pipeline_config(path: Path, **scoring: int) -> Path:
    """The bundled pipeline.yaml with model selection's time budget cut for end-to-end runs
    (and ``scoring`` settings changed), written to ``path`` for CHURN_PIPELINE_CONFIG."""
    config = yaml.safe_load((PROJECT_DIR / "include" / "churn" / "pipeline.yaml").read_text())
    config["training"]["search"]["time_budget_seconds"] = E2E_SELECTION_BUDGET_SECONDS
    config["scoring"].update(scoring)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Deployment:
    root: Path
    env: dict[str, str]
    settings: Settings

    def airflow(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "airflow"), *args], env=self.env, capture_output=True, text=True, check=check, timeout=900
        )

    def trigger(self, **conf: str) -> subprocess.CompletedProcess:
        """Run the DAG once, as `airflow dags test` does, with trigger parameters."""
        return self.airflow(
            "dags", "test", "churn_pipeline", SCORE_DATE.isoformat(), "--conf", json.dumps(conf), check=False
        )

    def json_output(self, *args: str) -> list[dict]:
        """A CLI command's JSON answer; Airflow may log warnings on stdout before it."""
        lines = self.airflow(*args, "-o", "json").stdout.splitlines()
        return json.loads(next(line for line in reversed(lines) if line.startswith("[")))

    def latest_run(self) -> dict:
        runs = self.json_output("dags", "list-runs", "churn_pipeline")
        return max(runs, key=lambda run: run["run_after"])

    def task_states(self, run_id: str) -> dict[str, str]:
        rows = self.json_output("tasks", "states-for-dag-run", "churn_pipeline", run_id)
        return {row["task_id"]: row["state"] for row in rows}

    def scores(self) -> pd.DataFrame:
        return stored_scores(self.settings.warehouse_url)


def deploy(
    root: Path, training_rows: int, scoring_rows: int, *, prepared: bool = True, **extra_env: str
) -> Deployment:
    """A fresh deployment under ``root`` with generated snapshots and a migrated metadata database,
    or, not ``prepared``, neither: as a fresh clone has them, for `make demo` to make."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(root / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_DIR / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "CHURN_HOME": str(root / "churn"),
        "GX_ANALYTICS_ENABLED": "false",
    }
    for inherited in INHERITED_SETTINGS:
        env.pop(inherited, None)
    env.update(extra_env)
    settings = load_settings(env)
    deployment = Deployment(root, env, settings)
    if not prepared:
        return deployment
    subprocess.run(
        [
            str(BIN / "churn-generate"),
            "--out",
            str(settings.sources_dir),
            "--training-rows",
            str(training_rows),
            "--scoring-rows",
            str(scoring_rows),
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    deployment.airflow("db", "migrate")
    return deployment
