"""The DAG on a real CeleryExecutor: Redis as broker, PostgreSQL as metadata database and
Celery result backend, the API server, scheduler and DAG processor, and two `airflow celery
worker` processes named `worker-a@<host>` and `worker-b@<host>`, all on loopback.

Which worker ran which `score.partition` try is read from Celery's own record: with
`result_extended`, Celery's result backend keeps, for every task a worker starts, that
worker's name and the task's arguments, which for Airflow are the workload naming the task
instance try (its id, unique to the try, task id and map index). The REST API's task
instances give the ids of the tries that succeeded. Airflow's own `hostname` field is the
machine's name, the same for both workers here.

A worker is killed the way a machine dies: SIGKILL to the worker and every process under it,
at a moment when one of its partitions is streaming rows into the warehouse in an uncommitted
transaction (its task process's PostgreSQL session, found by its TCP port, is running COPY).
The scheduler fails the try once its heartbeat stops, and the DAG's retries rerun the
partition on the other worker.

The test starts and stops its own Redis, databases and Airflow processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from tests.conftest import PROJECT_DIR, free_port
from tests.e2e.airflow_stack import (
    BIN,
    Stack,
    connect,
    days_before_today,
    log_tails,
    stack_setting,
    start,
    stop,
)
from tests.e2e.deployment import E2E_SELECTION_BUDGET_SECONDS

pytestmark = pytest.mark.e2e

SCORE_DATE = days_before_today(9)
SCORING_ROWS = 1_000
PARTITION_ROWS = 200
PARTITIONS = SCORING_ROWS // PARTITION_ROWS
WORKERS = ("worker-a", "worker-b")
# Scored and written per batch: a partition of 200 customers streams its rows for some seconds,
# a window wide enough to kill its worker in the middle of it.
BATCH_ROWS = 2
# A task instance whose heartbeat stops (its worker was killed) is failed after this many
# seconds and retried; Airflow's default is 300.
HEARTBEAT_TIMEOUT_SECONDS = 20
# Caps the DAG's two-minute exponential retry delay, so the retry starts at once.
MAX_RETRY_DELAY_SECONDS = 5


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A Redis server of the test's own on a loopback port, keeping nothing on disk."""
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing in CI: .ci/run must install Debian's redis-server")
        pytest.skip("CeleryExecutor test SKIPPED: install redis-server (Debian's package) to run it")
    root = tmp_path_factory.mktemp("redis")
    port = free_port()
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = start([*command, "--daemonize", "no", "--dir", str(root)], os.environ, root / "redis.log")
    try:
        deadline = time.monotonic() + 30
        while not _answers_ping(port):
            assert process.poll() is None and time.monotonic() < deadline, (root / "redis.log").read_text()
            time.sleep(0.2)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(process)


def _answers_ping(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(16).startswith(b"+PONG")
    return False


def pipeline_config(path: Path) -> Path:
    """The bundled pipeline.yaml with small models, partitions of ``PARTITION_ROWS`` customers
    and batches of ``BATCH_ROWS``: a test-only configuration file, as CHURN_PIPELINE_CONFIG
    allows."""
    config = yaml.safe_load((PROJECT_DIR / "include" / "churn" / "pipeline.yaml").read_text())
    config["training"]["cv_folds"] = 3
    config["training"]["candidates"]["hist_gradient_boosting"]["max_iter"] = 30
    config["training"]["search"]["time_budget_seconds"] = E2E_SELECTION_BUDGET_SECONDS
    config["scoring"].update(batch_rows=BATCH_ROWS, partition_rows=PARTITION_ROWS)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Worker:
    name: str  # Celery's node name: worker-a@<host>
    process: subprocess.Popen


@dataclass
class CeleryStack(Stack):
    metadata_url: str = ""
    workers: list[Worker] = field(default_factory=list)

    def celery_records(self) -> list[dict]:
        """Every Celery task a worker started, from Celery's result backend (the metadata
        database): its state, the worker that took it, and the task instance try its Airflow
        workload names (``id`` is the try's own task instance id)."""
        engine = sa.create_engine(self.metadata_url)
        try:
            with engine.connect() as connection:
                query = sa.text("SELECT task_id, status, worker, args FROM celery_taskmeta")
                rows = connection.execute(query).all()
        finally:
            engine.dispose()
        return [_celery_record(*row) for row in rows]

    def worker_running(self, pid: int) -> Worker | None:
        """The worker whose process tree holds process ``pid``."""
        lineage = set(ancestors(pid))
        return next((worker for worker in self.workers if worker.process.pid in lineage), None)

    def ports_writing_scores(self) -> set[int]:
        """The client ports of warehouse sessions inside a transaction whose latest statement is
        a COPY: partitions streaming their rows into staging, not yet committed."""
        engine = sa.create_engine(self.warehouse_url)
        try:
            with engine.connect() as connection:
                query = sa.text(
                    "SELECT client_port FROM pg_stat_activity WHERE datname = current_database() "
                    "AND xact_start IS NOT NULL AND query ILIKE 'COPY %'"
                )
                return set(connection.execute(query).scalars())
        finally:
            engine.dispose()


def _celery_record(task_id: str, status: str, worker: str | None, args: bytes | None) -> dict:
    ti = json.loads(json.loads(bytes(args))[0])["ti"] if args else {}
    return {
        "celery_task_id": task_id,
        "status": status,
        "worker": worker,
        **{key: ti.get(key) for key in ("id", "task_id", "map_index", "try_number", "run_id")},
    }


def _ping_workers(broker_url: str) -> set[str]:
    """The names of the Celery workers that answer a ping through the broker."""
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        return {name for answer in app.control.ping(timeout=1.0) for name in answer}
    finally:
        app.close()


@pytest.fixture(scope="module")
def celery_stack(postgres_url: str, redis_url: str, tmp_path_factory) -> Iterator[CeleryStack]:
    root = tmp_path_factory.mktemp("celery")
    with stack_setting(postgres_url, root, training_rows=3_000, scoring_rows=SCORING_ROWS, seed=13) as setting:
        env = setting.env
        env.update(
            {
                "CHURN_PIPELINE_CONFIG": str(pipeline_config(root / "pipeline.yaml")),
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": redis_url,
                # Two task processes per worker; each reserves one task at a time and acknowledges
                # it only when it is done, so a killed worker holds no queued partitions hostage.
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
                # The result backend (the metadata database) keeps each task's worker and arguments.
                "AIRFLOW__CELERY__EXTRA_CELERY_CONFIG": json.dumps({"result_extended": True}),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_SECONDS),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
                "AIRFLOW__CORE__MAX_TASK_RETRY_DELAY": str(MAX_RETRY_DELAY_SECONDS),
                # Only the test's own triggers run: unpausing must not start the nightly slot's run.
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            }
        )
        migrate = root / "db-migrate.log"
        migration = start([str(BIN / "airflow"), "db", "migrate"], env, migrate)
        assert migration.wait(timeout=300) == 0, log_tails([migrate])
        components = {
            "api-server": ["api-server"],
            "scheduler": ["scheduler"],
            "dag-processor": ["dag-processor"],
        }
        for name in WORKERS:
            components[name] = [
                "celery",
                "worker",
                "--celery-hostname",
                f"{name}@%h",
                "--pid",
                str(root / f"{name}.pid"),
                "--skip-serve-logs",
            ]
        logs = [root / f"{name}.log" for name in components]
        processes = {}
        try:
            for name, arguments in components.items():
                processes[name] = start([str(BIN / "airflow"), *arguments], env, root / f"{name}.log")
            api = connect(f"http://127.0.0.1:{setting.api_port}", setting.password, list(processes.values()), logs)
            node = f"@{socket.gethostname()}"
            deadline = time.monotonic() + 120
            while _ping_workers(redis_url) != {name + node for name in WORKERS}:
                assert time.monotonic() < deadline, log_tails(logs)
                time.sleep(1)
            yield CeleryStack(
                api=api,
                warehouse_url=setting.warehouse_url,
                sources=setting.sources,
                root=root,
                logs=logs,
                metadata_url=setting.metadata_url,
                workers=[Worker(name + node, processes[name]) for name in WORKERS],
            )
        finally:
            for process in processes.values():
                stop(process)


def _parents() -> dict[int, int]:
    """Every process's parent, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
    return parents


def ancestors(pid: int) -> list[int]:
    parents, lineage = _parents(), []
    while pid in parents and pid not in lineage:
        lineage.append(pid)
        pid = parents[pid]
    return lineage


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant, as a crashed machine would lose them: the
    worker, its pool processes and the task processes (which run in process groups of their own)."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    tree, pending = [], [pid]
    while pending:
        tree.append(pending.pop())
        pending.extend(children.get(tree[-1], []))
    for member in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def tcp_ports(pid: int) -> set[int]:
    """The local ports of process ``pid``'s TCP sockets."""
    with contextlib.suppress(OSError):
        sockets = set()
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                sockets.add(os.readlink(descriptor).removeprefix("socket:[").removesuffix("]"))
        ports = set()
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[9] in sockets:
                    ports.add(int(fields[1].rpartition(":")[2], 16))
        return ports
    return set()


def partition_instances(stack: Stack, run_id: str) -> list[dict]:
    return sorted(
        (ti for ti in stack.task_instances(run_id) if ti["task_id"] == "score.partition"),
        key=lambda ti: ti["map_index"],
    )


def partition_mid_write(stack: CeleryStack, run_id: str) -> tuple[dict, Worker] | None:
    """A running `score.partition` try whose task process is streaming rows into staging in an
    uncommitted transaction, and the worker running it."""
    writing = stack.ports_writing_scores()
    for ti in partition_instances(stack, run_id):
        running = ti["state"] == "running" and ti["pid"] and tcp_ports(ti["pid"]) & writing
        if running and (worker := stack.worker_running(ti["pid"])):
            return ti, worker
    return None


def assert_one_row_per_customer(stack: Stack, run_id: str) -> None:
    scores = stack.scores(SCORE_DATE)
    scoring = pd.read_csv(stack.sources["scoring"], dtype="string", keep_default_na=False)
    assert len(scores) == SCORING_ROWS
    assert scores["customer_id"].is_unique
    assert set(scores["customer_id"]) == set(scoring["customerID"])
    assert set(scores["run_id"]) == {run_id}


def test_both_workers_score_partitions(celery_stack: CeleryStack):
    stack = celery_stack
    assert stack.api.patch("/api/v2/dags/churn_pipeline", json={"is_paused": False}).status_code == 200
    answer = stack.trigger({"score_date": SCORE_DATE.isoformat()})
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["dag_run_id"]

    assert stack.wait_for(run_id) == "success", stack.log_tails()
    assert {ti["state"] for ti in stack.task_instances(run_id)} == {"success"}
    partitions = partition_instances(stack, run_id)
    assert [ti["map_index"] for ti in partitions] == list(range(PARTITIONS))
    # The UI names each instance by its customers' rows.
    assert [ti["rendered_map_index"] for ti in partitions] == [
        f"rows {index * PARTITION_ROWS:,}-{(index + 1) * PARTITION_ROWS:,}" for index in range(PARTITIONS)
    ]
    assert len({ti["hostname"] for ti in partitions}) == 1  # one machine: Airflow's hostname cannot tell

    taken_by = {record["id"]: record["worker"] for record in stack.celery_records()}
    ran_on = {ti["map_index"]: taken_by.get(ti["id"]) for ti in partitions}
    assert set(ran_on.values()) == {worker.name for worker in stack.workers}, ran_on
    assert_one_row_per_customer(stack, run_id)


def test_a_worker_killed_mid_partition_is_survived(celery_stack: CeleryStack):
    stack = celery_stack
    answer = stack.trigger({"score_date": SCORE_DATE.isoformat()})
    assert answer.status_code == 200, answer.text
    run_id = answer.json()["dag_run_id"]

    caught = None
    while caught is None:
        state = stack.api.get(f"/api/v2/dags/churn_pipeline/dagRuns/{run_id}").json()["state"]
        assert state in {"queued", "running"}, f"no partition was caught mid-write\n{stack.log_tails()}"
        caught = partition_mid_write(stack, run_id)
    victim, killed = caught
    kill_tree(killed.process.pid)
    survivor = next(worker for worker in stack.workers if worker is not killed)

    assert stack.wait_for(run_id) == "success", stack.log_tails()
    partitions = partition_instances(stack, run_id)
    assert {ti["state"] for ti in partitions} == {"success"}
    retried = next(ti for ti in partitions if ti["map_index"] == victim["map_index"])
    assert retried["try_number"] > victim["try_number"]
    tries = stack.api.get(
        f"/api/v2/dags/churn_pipeline/dagRuns/{run_id}/taskInstances/score.partition/{victim['map_index']}/tries"
    ).json()["task_instances"]
    states = {attempt["try_number"]: attempt["state"] for attempt in tries}
    assert states[victim["try_number"]] == "failed"  # by the scheduler: its heartbeat stopped
    assert states[retried["try_number"]] == "success"

    # Celery's record agrees with the process tree: the killed worker started the killed try,
    # which never finished; the partition's last try ran on the other worker.
    records = {record["id"]: record for record in stack.celery_records()}
    assert (records[victim["id"]]["worker"], records[victim["id"]]["status"]) == (killed.name, "STARTED")
    assert records[retried["id"]]["worker"] == survivor.name
    assert_one_row_per_customer(stack, run_id)
