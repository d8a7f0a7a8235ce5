"""Peak resident memory and wall time of each phase as the DAG runs it, at several sizes.

Each phase runs in a fresh process, as an Airflow worker runs a task, through the same
entry point the DAG's task calls, on the records the phase before it handed over, with
20,000 training customers and the given numbers of scoring customers.

    .venv/bin/python benchmarks/phase_memory.py 100000 1000000

``make bench-phases`` runs it at 100,000 and 1,000,000 customers. The table is printed and
appended to BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from measuring import machine, peak_resident_mib, publish

TRAINING_CUSTOMERS = 20_000
SCORE_DATE = "2026-11-29"
# Each phase and the phases whose results it takes, as the DAG wires them.
PHASES = {
    "ingest": [],
    "validate": ["ingest"],
    "feature": ["validate"],
    "train": ["feature"],
    "evaluate": ["train"],
    "package": ["validate", "train", "evaluate"],
    "score": ["feature", "package"],
}


def run_phase_once(phase: str, workdir: Path) -> None:
    """Run ``phase`` on the recorded results of its upstream phases; record its own, its time and peak."""
    import importlib

    entry_point = getattr(importlib.import_module(f"churn.{phase}"), f"run_{phase}")
    upstream = [json.loads((workdir / f"{name}.json").read_text()) for name in PHASES[phase]]
    start = time.perf_counter()
    if phase == "ingest":
        sources = workdir / "sources"
        params = {
            "training_source": str(sources / "training.csv"),
            "scoring_source": str(sources / "scoring.csv"),
            "contract": "telco_churn",
            "score_date": SCORE_DATE,
        }
        now = datetime.now(UTC)
        result = entry_point(
            params, airflow_run_id=f"benchmark__{now:%Y%m%dT%H%M%S}", logical_date=None, run_after=now
        )
    else:
        result = entry_point(*upstream)
    seconds = time.perf_counter() - start
    (workdir / f"{phase}.json").write_text(result.model_dump_json())
    print(json.dumps({"seconds": seconds, "peak_mib": peak_resident_mib()}))


def measure_size(customers: int) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="churn-phases-") as folder:
        workdir = Path(folder)
        env = {**os.environ, "CHURN_HOME": str(workdir / "home"), "AIRFLOW_HOME": str(workdir / "airflow")}
        for inherited in ("MLFLOW_TRACKING_URI", "CHURN_WAREHOUSE_URL", "AIRFLOW_CONN_CHURN_WAREHOUSE"):
            env.pop(inherited, None)
        subprocess.run(
            [
                Path(sys.executable).parent / "churn-generate",
                "--out",
                workdir / "sources",
                "--training-rows",
                str(TRAINING_CUSTOMERS),
                "--scoring-rows",
                str(customers),
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        measured = {}
        for phase in PHASES:
            done = subprocess.run(
                [sys.executable, __file__, "--phase", phase, str(workdir)], env=env, capture_output=True, text=True
            )
            if done.returncode:
                sys.exit(f"{phase} failed at {customers:,} customers:\n{done.stderr[-3000:]}")
            measured[phase] = json.loads(done.stdout.strip().splitlines()[-1])
        return measured


def main() -> None:
    if sys.argv[1:2] == ["--phase"]:
        run_phase_once(sys.argv[2], Path(sys.argv[3]))
        return
    sizes = [int(size) for size in sys.argv[1:]] or [100_000, 1_000_000]
    results = {customers: measure_size(customers) for customers in sizes}
    header = " | ".join(f"{customers:,}: seconds | {customers:,}: peak MiB" for customers in sizes)
    lines = [
        f"Each phase in a fresh process, {TRAINING_CUSTOMERS:,} training customers, SQLite warehouse, "
        f"{machine()}:",
        "",
        f"| phase | {header} |",
        "|---|" + "---|---|" * len(sizes),
    ]
    for phase in PHASES:
        cells = " | ".join(
            f"{results[customers][phase]['seconds']:.1f} | {results[customers][phase]['peak_mib']:,.0f}"
            for customers in sizes
        )
        lines.append(f"| {phase} | {cells} |")
    totals = " | ".join(f"{sum(r['seconds'] for r in results[customers].values()):.1f} | " for customers in sizes)
    lines.append(f"| all phases | {totals}|")
    publish("Peak memory and time of each phase (`make bench-phases`)", "\n".join(lines))


if __name__ == "__main__":
    main()
