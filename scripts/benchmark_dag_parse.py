"""Time a cold parse of dags/churn_pipeline.py, as the DAG processor does it.

Each sample is a fresh interpreter with Airflow's SDK already imported (the DAG processor
has it loaded), timing only the DAG file's own top-level code.

    .venv/bin/python scripts/benchmark_dag_parse.py [samples]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "churn_pipeline.py"
PROBE = (
    "import runpy, time, airflow.sdk; start = time.perf_counter(); "
    f"runpy.run_path({str(DAG_FILE)!r}); print(time.perf_counter() - start)"
)


def main() -> None:
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    seconds = [
        float(subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout)
        for _ in range(samples)
    ]
    print(
        f"cold parse of {DAG_FILE.name} over {samples} fresh interpreters: "
        f"median {statistics.median(seconds):.3f}s, max {max(seconds):.3f}s"
    )


if __name__ == "__main__":
    main()
