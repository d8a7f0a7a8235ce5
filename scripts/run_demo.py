"""Run the churn pipeline once through Airflow (``dag.test``) and print what it did.

Used by ``make demo``. It runs the real DAG file in one process on the configured
defaults, then reads the warehouse table and the MLflow registry to report the results.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from churn.links import experiments_url, mlflow_run_url, mlflow_ui_url, model_version_url, ui_url

DAGS_FOLDER = Path(__file__).resolve().parents[1] / "dags"


PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"
TASK_STARTS = re.compile(r"\[DAG TEST\] starting task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
TASK_ENDS = re.compile(r"\[DAG TEST\] end task task_id=(?P<task>\S+) map_index=(?P<index>-?\d+)")
# The one line each phase logs about what it did (see churn.handoffs), e.g. "validate: ...",
# by a logger of the churn package, or, for the approval operator, Airflow's logger of it.
PHASE_SUMMARY = re.compile(
    r"\] (?P<summary>(?P<task>[a-z]+(?:\.[a-z]+)?)(?: rows [0-9,-]+)?: .*?)"
    r"\s+\[(?:airflow\.task\.operators\.)?churn"
)
# The last line of a task's traceback, e.g. "churn.run_parameters.RunParameterError: ...": a
# task refused before its run folder exists (its parameters) records its reason nowhere else.
RAISED = re.compile(r"^(?:\w+\.)+(?P<error>\w+: .+)$")
# A file or folder a phase's sentence names (a URL or an absolute path): its progress line
# names only the last part; the summary links the files to open, and the log has it whole.
LOCATION = re.compile(r"(?:\b[a-z][a-z0-9+]*://|(?<![\w.])/)[^\s,;()]+")
# Progress lines fit a terminal this wide: the rest of a phase's sentence is in the log.
WIDTH = 120


def shortened_line(line: str) -> str:
    """``line`` with each location cut to its last part, and cut to :data:`WIDTH` characters
    after its last whole clause (or word) that fits, outside parentheses."""
    line = LOCATION.sub(lambda location: location[0].rstrip("/").rsplit("/", 1)[-1], line)
    if len(line) <= WIDTH:
        return line
    fits = line[: WIDTH - 1]
    if fits.count("(") > fits.count(")"):
        return fits[: fits.rfind("(")].rstrip() + "…"
    clause_end = max(fits.rfind("; "), fits.rfind(", "))
    return (fits[:clause_end] if clause_end > WIDTH // 2 else fits.rsplit(" ", 1)[0]) + "…"


class Progress:
    """One line per task as it finishes (task, owner, seconds, what it did), from Airflow's log."""

    def __init__(self, write: Callable[[str], None]) -> None:
        from churn.raci import load_raci, phase_task_id

        self.phase_of = phase_task_id

        self.write, self.raci = write, load_raci()
        self.started: dict[tuple[str, str], float] = {}
        self.said: dict[str, str] = {}
        self.raised: str | None = None

    def read(self, line: str) -> None:
        if started := TASK_STARTS.search(line):
            self.started[(started["task"], started["index"])] = time.monotonic()
            self.raised = None
        elif said := PHASE_SUMMARY.search(line):
            self.said[said["task"]] = said["summary"].split(": ", 1)[1]
        elif ended := TASK_ENDS.search(line):
            task = ended["task"]
            seconds = time.monotonic() - self.started.pop((task, ended["index"]), time.monotonic())
            owner = self.raci[self.phase_of(task)].responsible
            failed = f"failed: {self.raised}" if self.raised else "did not finish: see the summary below"
            what = self.said.pop(task, failed)
            self.write(shortened_line(f"  {task:<15} {owner:<14} {seconds:5.1f} s  {what}") + "\n")
        elif raised := RAISED.match(line):
            self.raised = raised["error"]


@contextmanager
def log_to(path: Path, read_line: Callable[[str], None]) -> Iterator[Callable[[str], None]]:
    """Send all this process writes to stdout and stderr (Airflow's log and the tasks') to
    ``path``, handing each line to ``read_line`` too; yields a writer to the real stdout."""
    sys.stdout.flush()
    sys.stderr.flush()
    terminal, errors = os.dup(1), os.dup(2)
    reading, writing = os.pipe()
    os.dup2(writing, 1)
    os.dup2(writing, 2)
    os.close(writing)

    def copy() -> None:
        with os.fdopen(reading, encoding="utf-8", errors="replace") as lines, path.open("w") as log:
            for line in lines:
                log.write(line)
                read_line(line)

    copier = threading.Thread(target=copy, daemon=True)
    copier.start()
    try:
        yield lambda text: os.write(terminal, text.encode())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(terminal, 1)  # closes the pipe's last writer, so the copier reads to the end
        os.dup2(errors, 2)
        copier.join(timeout=10)
        os.close(terminal)
        os.close(errors)


def port_setting(port_variable: str, default_port: int) -> str:
    """`` VARIABLE=port`` when the port is not the default, so a printed command serves on it."""
    port = os.environ.get(port_variable)
    return f" {port_variable}={port}" if port and port != str(default_port) else ""


def run_links(settings, airflow_run_id: str, score_date: str, log: object) -> list[str]:
    """Where to see this run: its Airflow run, its MLflow run and model version, its data report
    and Airflow's log of it."""
    from urllib.parse import quote

    import mlflow

    from churn.manifest import read_manifests

    manifests = read_manifests(settings.run_dir(score_date, airflow_run_id))
    airflow, tracking = ui_url("AIRFLOW_PORT", 8080), mlflow_ui_url()
    links = [f"Airflow run    {airflow}/dags/churn_pipeline/runs/{quote(airflow_run_id, safe='')}"]
    if "train" in manifests:
        run_id = manifests["train"].mlflow_run_id
        experiment = mlflow.get_run(run_id).info.experiment_id
        links.append(f"MLflow run     {mlflow_run_url(tracking, experiment, run_id)}")
    if "package" in manifests:
        packaged = manifests["package"]
        links.append(f"model version  {model_version_url(tracking, packaged.model_name, packaged.model_version)}")
    elif "score" in manifests:  # packaging skipped: the version that scored (the date's model of record)
        version = manifests["score"].model_version
        links.append(f"model version  {model_version_url(tracking, settings.config.registered_model, version)}")
    if "validate" in manifests:
        links.append(f"data report    {manifests['validate'].report}")
    links.append(f"Airflow log    {log}")
    return links


def conf_item(item: str) -> tuple[str, object]:
    """``KEY=VALUE`` as a run parameter: the value read as JSON (``true``, ``5``), else as text
    (a path, a date), as ``airflow dags trigger --conf`` would have it."""
    key, value = item.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--score-date", required=True, help="YYYY-MM-DD")
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra trigger parameters, e.g. training_source=/data/train.csv or allow_shrink=true (a JSON value, "
        "else text)",
    )
    args = parser.parse_args()

    from airflow.dag_processing.dagbag import DagBag
    from run_report import summarize_run

    from churn.airflow_connections import task_settings
    from churn.storage import copy_atomically
    from churn.warehouse import warehouse_state

    conf = {"score_date": args.score_date, **dict(conf_item(item) for item in args.conf)}
    settings = task_settings(warehouse=True, mlflow=True)
    print(f"Running churn_pipeline for {args.score_date}; one line per task as it finishes:", flush=True)
    with tempfile.TemporaryDirectory(prefix="churn-demo-") as scratch:
        log = Path(scratch) / "airflow.log"
        progress = Progress(lambda text: None)
        with log_to(log, progress.read) as terminal:
            progress.write = terminal
            dagbag = DagBag(dag_folder=str(DAGS_FOLDER))
            dag_run = None if dagbag.import_errors else dagbag.dags["churn_pipeline"].test(run_conf=conf)
        if dag_run is None:
            print(f"the DAG file does not import: {dagbag.import_errors}", file=sys.stderr)
            return 1
        run_dir = settings.run_dir(args.score_date, dag_run.run_id)
        kept = copy_atomically(log, run_dir / "airflow.log")
    summary, finished = summarize_run(run_dir, settings)
    print(f"\n=== churn_pipeline run {dag_run.run_id}: {dag_run.state} ===")
    succeeded = finished and str(dag_run.state) in {"success", "DagRunState.SUCCESS"}
    if not succeeded:
        print(summary)
        print(f"Airflow's log of the run: {kept}")
        print("\nNothing after the failed phase ran; earlier scores and the champion are untouched.")
        return 1
    score_date = date.fromisoformat(args.score_date)
    print(warehouse_state(settings, score_date).describe(settings.config.warehouse.table, score_date))
    airflow, mlflow = port_setting("AIRFLOW_PORT", 8080), port_setting("MLFLOW_PORT", 5000)
    print(f"Links (`make airflow{airflow}` and `make mlflow{mlflow}` serve them):")
    for line in run_links(settings, dag_run.run_id, args.score_date, kept):
        print(f"  {line}")
    password_file = Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / PASSWORD_FILE
    login = (
        f"the password is in {password_file}"
        if password_file.is_file()
        else "its first start writes the password to a file and prints where"
    )
    print(
        f"Airflow UI {ui_url('AIRFLOW_PORT', 8080)}: user admin, {login}\n"
        f"MLflow UI  {experiments_url(mlflow_ui_url())}\n"
        f"The warehouse's rows for the date: make scores SCORE_DATE={args.score_date}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
