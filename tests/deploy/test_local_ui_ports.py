"""`make airflow` and `make mlflow` on the ports AIRFLOW_PORT and MLFLOW_PORT name, listening on
127.0.0.1 unless UI_HOST says otherwise, and the demo's hints naming the same addresses.

The real starts run the Makefile's targets as a developer does, in a throwaway CHURN_HOME, and
stop their own process group afterwards."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from scripts.run_demo import ui_url
from tests.conftest import INHERITED_SETTINGS, PROJECT_DIR, free_port
from tests.e2e.airflow_stack import log_tails, start

START_TIMEOUT_SECONDS = 120
TASK_TIMEOUT_SECONDS = 90


def make_env(ui_home: Path) -> dict[str, str]:
    """The environment of a developer's shell with nothing of their setup or of this session's:
    no Airflow settings (the Makefile sets its own), no ports or host of their own, no
    MAKEFLAGS of an enclosing `make test` (whose variables would reach the inner make)."""
    dropped = {*INHERITED_SETTINGS, "AIRFLOW_HOME", "UI_HOST", "AIRFLOW_PORT", "MLFLOW_PORT"}
    dropped |= {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"}
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in dropped and not name.startswith(("AIRFLOW__", "MLFLOW_"))
    }
    env["CHURN_HOME"] = str(ui_home)
    return env


def make(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(PROJECT_DIR), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def listening_addresses(port: int) -> dict[str, int | None]:
    """Every address a TCP socket listens on at ``port``, with the listening process."""
    return {
        connection.laddr.ip: connection.pid
        for connection in psutil.net_connections(kind="tcp")
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
    }


def stop_group(process: subprocess.Popen) -> None:
    """Stop ``process``'s group as Ctrl-C in its terminal would, then for sure (idle LocalExecutor
    workers outlive both SIGINT and SIGTERM); wait until no process of the group is left."""
    for sig, grace in ((signal.SIGINT, 10), (signal.SIGTERM, 10), (signal.SIGKILL, 30)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            process.poll()
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)
    raise AssertionError(f"process group {process.pid} survived SIGKILL")


@contextlib.contextmanager
def running(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    process = start(command, env, log)
    try:
        yield process
    finally:
        stop_group(process)


def wait_until_answers(url: str, process: subprocess.Popen, log: Path) -> httpx.Response:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args} exited\n{log_tails([log])}"
        with contextlib.suppress(httpx.HTTPError):
            answer = httpx.get(url, timeout=5)
            if answer.status_code == 200:
                return answer
        time.sleep(1)
    raise AssertionError(f"{url} did not answer in {START_TIMEOUT_SECONDS}s\n{log_tails([log])}")


def assert_loopback_only(port: int, process: subprocess.Popen) -> None:
    listeners = listening_addresses(port)
    assert set(listeners) == {"127.0.0.1"}, f"port {port} is listened on at {listeners}"
    group = {proc.pid for proc in psutil.process_iter() if _group_of(proc.pid) == process.pid}
    assert set(listeners.values()) <= group, f"port {port} is served by {listeners}, not by {process.args}"


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@pytest.fixture
def ui_home(tmp_path: Path) -> Path:
    """Refuses to run the targets when `make install` would reinstall: a test must not."""
    home = tmp_path / "churn"
    result = subprocess.run(["make", "-C", str(PROJECT_DIR), "-q", "install"], env=make_env(home), check=False)
    assert result.returncode == 0, "the virtualenv is out of date: run `make install` first"
    return home


def test_the_targets_take_their_ports_and_bind_loopback_by_default(tmp_path: Path):
    env = make_env(tmp_path / "churn")

    airflow = make("-n", "airflow", "AIRFLOW_PORT=8091", env=env).stdout
    assert (
        "AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=8091 AIRFLOW__API__BASE_URL=http://127.0.0.1:8091"
    ) in airflow
    assert "AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:8091/execution/" in airflow
    assert airflow.rstrip().endswith("/airflow standalone")
    mlflow = make("-n", "mlflow", "MLFLOW_PORT=5055", env=env).stdout
    assert "mlflow ui " in mlflow and mlflow.rstrip().endswith("--host 127.0.0.1 --port 5055")

    defaults = make("-n", "airflow", "mlflow", env=env).stdout
    assert "AIRFLOW__API__HOST=127.0.0.1 AIRFLOW__API__PORT=8080 " in defaults
    assert "--host 127.0.0.1 --port 5000" in defaults

    # Every interface when asked for; the tasks still reach the API server on loopback.
    everywhere = make("-n", "airflow", "mlflow", "UI_HOST=0.0.0.0", env=env).stdout
    assert "AIRFLOW__API__HOST=0.0.0.0 AIRFLOW__API__PORT=8080 " in everywhere
    assert "AIRFLOW__API__BASE_URL=http://127.0.0.1:8080 " in everywhere
    assert "AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:8080/execution/" in everywhere
    assert "--host 0.0.0.0 --port 5000" in everywhere


def test_the_demo_hints_name_the_configured_addresses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # What the Makefile exports to the demo's recipe, read as the demo reads it.
    probe = "probe: ; @echo $$UI_HOST $$AIRFLOW_PORT $$MLFLOW_PORT"
    env = make_env(tmp_path / "churn")
    assert make("--eval", probe, "probe", env=env).stdout.split() == ["127.0.0.1", "8080", "5000"]
    exported = make("--eval", probe, "probe", "AIRFLOW_PORT=8091", "MLFLOW_PORT=5055", env=env).stdout.split()
    assert exported == ["127.0.0.1", "8091", "5055"]

    for name, value in zip(("UI_HOST", "AIRFLOW_PORT", "MLFLOW_PORT"), exported, strict=True):
        monkeypatch.setenv(name, value)
    assert ui_url("AIRFLOW_PORT", 8080) == "http://127.0.0.1:8091"
    assert ui_url("MLFLOW_PORT", 5000) == "http://127.0.0.1:5055"
    monkeypatch.setenv("UI_HOST", "0.0.0.0")
    assert ui_url("AIRFLOW_PORT", 8080) == "http://127.0.0.1:8091"
    for name in ("UI_HOST", "AIRFLOW_PORT", "MLFLOW_PORT"):
        monkeypatch.delenv(name)
    assert ui_url("AIRFLOW_PORT", 8080) == "http://127.0.0.1:8080"
    assert ui_url("MLFLOW_PORT", 5000) == "http://127.0.0.1:5000"


@pytest.mark.e2e
def test_make_airflow_serves_on_its_port_on_loopback_and_runs_tasks(ui_home: Path, tmp_path: Path):
    port = free_port()
    env = make_env(ui_home)
    # Standalone's log servers on ports of their own, so that the test runs next to other Airflows,
    # and two task processes rather than 32 on a small machine.
    env["AIRFLOW__CORE__PARALLELISM"] = "2"
    env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"] = str(free_port())
    env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"] = str(free_port())
    log = tmp_path / "make-airflow.log"
    rows = ["TRAINING_ROWS=2000", "SCORING_ROWS=500"]
    command = ["make", "-C", str(PROJECT_DIR), "airflow", f"AIRFLOW_PORT={port}", *rows]

    with contextlib.ExitStack() as stack:
        process = stack.enter_context(running(command, env, log))
        base = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{base}/api/v2/monitor/health", process, log)
        assert_loopback_only(port, process)
        wait_until_answers(f"{base}/execution/health", process, log)  # the Execution API on this port too

        # A task runs: its process reached the Execution API on this port, not localhost:8080.
        passwords = ui_home / "airflow" / "simple_auth_manager_passwords.json.generated"
        password = json.loads(passwords.read_text())["admin"]
        token = httpx.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        api = stack.enter_context(httpx.Client(base_url=base, headers=headers, timeout=30))
        deadline = time.monotonic() + TASK_TIMEOUT_SECONDS
        while api.get("/api/v2/dags/churn_pipeline").status_code != 200 and time.monotonic() < deadline:
            time.sleep(1)
        assert api.patch("/api/v2/dags/churn_pipeline", json={"is_paused": False}).status_code == 200
        states: dict[str, str | None] = {}
        while time.monotonic() < deadline and "success" not in states.values():
            assert process.poll() is None, log_tails([log])
            answer = api.get("/api/v2/dags/churn_pipeline/dagRuns/~/taskInstances")
            states = {ti["task_id"]: ti["state"] for ti in answer.json()["task_instances"]}
            assert "failed" not in states.values(), f"{states}\n{log_tails([log])}"
            time.sleep(1)
        assert states.get("ingest") == "success", f"{states}\n{log_tails([log])}"

    assert not listening_addresses(port), f"port {port} still open after the group stopped"


@pytest.mark.e2e
def test_make_mlflow_serves_on_its_port_on_loopback(ui_home: Path, tmp_path: Path):
    port = free_port()
    log = tmp_path / "make-mlflow.log"
    command = ["make", "-C", str(PROJECT_DIR), "mlflow", f"MLFLOW_PORT={port}"]

    with running(command, make_env(ui_home), log) as process:
        wait_until_answers(f"http://127.0.0.1:{port}/health", process, log)
        assert_loopback_only(port, process)
        experiments = httpx.get(
            f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search", params={"max_results": 10}, timeout=30
        )
        assert experiments.status_code == 200, experiments.text

    assert not listening_addresses(port), f"port {port} still open after the group stopped"
