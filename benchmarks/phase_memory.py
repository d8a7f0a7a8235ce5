"""Peak resident memory and wall time of each task as the DAG runs it, at several sizes.

Each task runs in a fresh process, as an Airflow worker runs it, through the same entry
point the DAG's task calls, on the records the tasks before it handed over, with 20,000
training customers and the given numbers of scoring customers. The mapped scoring
partitions run one after the other; the table shows the largest peak among them and
their total time.

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
# Each task, its entry point and the tasks whose results it takes, as the DAG wires them.
TASKS = {
    "ingest": ("churn.ingest:run_ingest", []),
    "validate": ("churn.validate:run_validate", ["ingest"]),
    "feature": ("churn.feature:run_feature", ["validate"]),
    "train": ("churn.train:run_train", ["feature"]),
    "evaluate": ("churn.evaluate:run_evaluate", ["train"]),
    "package": ("churn.package:run_package", ["validate", "train", "evaluate"]),
    "score.plan": ("churn.score:run_score_plan", ["feature", "package"]),
    "score.partition": ("churn.score:run_score_partition", ["score.plan"]),
    "score.publish": ("churn.score:run_score_publish", ["score.partition"]),
}


def run_task_once(task: str, workdir: Path, map_index: int | None) -> None:
    """Run ``task`` (one mapped instance of it, given ``map_index``) on the recorded results of
    its upstream tasks; record its own, its time and peak."""
    import importlib

    module, name = TASKS[task][0].split(":")
    entry_point = getattr(importlib.import_module(module), name)
    upstream = [json.loads((workdir / f"{name}.json").read_text()) for name in TASKS[task][1]]
    if map_index is not None:
        upstream = [upstream[0][map_index]]
    start = time.perf_counter()
    if task == "ingest":
        sources = workdir / "home" / "sources"  # CHURN_HOME/sources: ingest reads files only there
        params = {
            "training_source": str(sources / "training.csv"),
            "scoring_source": str(sources / "scoring.csv"),
            "contract": "telco_churn",
        }  # no score_date: the day the run is queued for, inside ingest's window of dates
        now = datetime.now(UTC)
        result = entry_point(
            params, airflow_run_id=f"benchmark__{now:%Y%m%dT%H%M%S}", logical_date=None, run_after=now
        )
    else:
        result = entry_point(*upstream)
    seconds = time.perf_counter() - start
    records = (
        [part.model_dump(mode="json") for part in result] if isinstance(result, list) else result.model_dump()
    )
    output = workdir / (f"{task}.{map_index}.json" if map_index is not None else f"{task}.json")
    output.write_text(json.dumps(records, default=str))
    print(json.dumps({"seconds": seconds, "peak_mib": peak_resident_mib()}))


def measure_task(task: str, workdir: Path, env: dict[str, str], customers: int, map_index: int | None = None):
    command = [sys.executable, __file__, "--task", task, str(workdir)]
    done = subprocess.run(
        command + ([str(map_index)] if map_index is not None else []), env=env, capture_output=True, text=True
    )
    if done.returncode:
        sys.exit(f"{task} failed at {customers:,} customers:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


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
                workdir / "home" / "sources",
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
        for task in TASKS:
            if task != "score.partition":
                measured[task] = measure_task(task, workdir, env, customers)
                continue
            partitions = len(json.loads((workdir / "score.plan.json").read_text()))
            runs = [measure_task(task, workdir, env, customers, index) for index in range(partitions)]
            staged = [json.loads((workdir / f"{task}.{index}.json").read_text()) for index in range(partitions)]
            (workdir / f"{task}.json").write_text(json.dumps(staged))
            measured[task] = {
                "seconds": sum(run["seconds"] for run in runs),
                "peak_mib": max(run["peak_mib"] for run in runs),
                "instances": partitions,
            }
        return measured


def main() -> None:
    if sys.argv[1:2] == ["--task"]:
        run_task_once(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else None)
        return
    sizes = [int(size) for size in sys.argv[1:]] or [100_000, 1_000_000]
    results = {customers: measure_size(customers) for customers in sizes}
    header = " | ".join(f"{customers:,}: seconds | {customers:,}: peak MiB" for customers in sizes)
    lines = [
        f"Each task in a fresh process, {TRAINING_CUSTOMERS:,} training customers, SQLite warehouse, {machine()}:",
        "",
        f"| task | {header} |",
        "|---|" + "---|---|" * len(sizes),
    ]
    for task in TASKS:
        cells = " | ".join(
            f"{results[customers][task]['seconds']:.1f} | {results[customers][task]['peak_mib']:,.0f}"
            for customers in sizes
        )
        instances = ", ".join(f"{results[customers][task].get('instances', 1)}" for customers in sizes)
        lines.append(
            f"| {task}" + (f" (instances: {instances})" if task == "score.partition" else "") + f" | {cells} |"
        )
    totals = " | ".join(f"{sum(r['seconds'] for r in results[customers].values()):.1f} | " for customers in sizes)
    lines.append(f"| all tasks | {totals}|")
    publish("Peak memory and time of each task (`make bench-phases`)", "\n".join(lines))


if __name__ == "__main__":
    main()
