"""A login the database refuses fails at once, naming the Connection and the field to fix; an
unreachable server, a lock another session holds and a task's time-out each end a wait within
the configured time, with nothing half-written.

Against real servers: the local PostgreSQL (scripts/local_postgres.sh makes one role log in
with a password over TCP, so a wrong one is refused), a local socket that accepts connections
and never answers (a server behind a black hole), and SQLite files.
"""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import sqlalchemy as sa

from churn.airflow_connections import ConnectionProblem
from churn.errors import PermanentError, is_transient
from churn.manifest import read_manifests
from churn.settings import DatabaseTimeouts
from churn.warehouse import WarehouseError, replace_scores, scores_table, warehouse_engine
from tests.conftest import SCORE_DATE, TrainedRun, score_rows, stored_scores, train_a_run

PASSWORD_LOGIN = "churn_password_login"  # the role scripts/local_postgres.sh makes give a password
SECRET = "s3cret-that-must-not-show"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, snapshots) -> TrainedRun:
    """A run trained in state of its own: evaluating it here records failures in its folder."""
    return train_a_run(tmp_path_factory.mktemp("bounded_waits"), snapshots)


@pytest.fixture
def password_login(postgres_url) -> sa.engine.URL:
    """The test database's URL for a role whose password is SECRET; the server must refuse any other."""
    admin = sa.create_engine(postgres_url)
    with admin.begin() as connection:
        if not connection.scalar(
            sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": PASSWORD_LOGIN}
        ):
            connection.exec_driver_sql(f"CREATE ROLE {PASSWORD_LOGIN} LOGIN")
        connection.exec_driver_sql(f"ALTER ROLE {PASSWORD_LOGIN} PASSWORD '{SECRET}'")
    admin.dispose()
    url = sa.engine.make_url(postgres_url).set(username=PASSWORD_LOGIN, password=SECRET)
    # The right password logs in, so what refuses the wrong one below is the password.
    right = sa.create_engine(url)
    with right.connect() as connection:
        assert connection.scalar(sa.text("SELECT current_user")) == PASSWORD_LOGIN
    right.dispose()
    return url


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port whose server accepts connections (the kernel does, up to the backlog) and never
    answers them: to a client, a server lost behind a black hole."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as server:
        yield server.getsockname()[1]


def evaluate_failure(trained: TrainedRun, monkeypatch) -> tuple[BaseException, float]:
    """What evaluating ``trained`` raises as its Airflow task does (the Connections read in the
    task), and how long it took."""
    from churn.evaluate import run_evaluate

    monkeypatch.setenv("CHURN_HOME", str(trained.settings.state_dir))
    started = time.monotonic()
    with pytest.raises(Exception) as raised:
        run_evaluate(trained.trained)
    return raised.value, time.monotonic() - started


def assert_evaluation_recorded_nothing(trained: TrainedRun, error: BaseException) -> None:
    run_dir = trained.trained.run.run_dir
    failure = read_manifests(run_dir)["failed"]
    assert failure.phase == "evaluate" and SECRET not in failure.error
    assert "evaluate" not in read_manifests(run_dir)
    mlflow.set_tracking_uri(trained.settings.mlflow_tracking_uri)
    assert "promotion_decision" not in mlflow.get_run(trained.trained.mlflow_run_id).data.tags
    assert SECRET not in str(error)


def test_a_refused_warehouse_password_fails_evaluate_at_once_naming_the_connection(
    trained, password_login, monkeypatch
):
    wrong = password_login.set(password=SECRET[::-1])
    monkeypatch.setenv("AIRFLOW_CONN_CHURN_WAREHOUSE", wrong.set(drivername="postgresql").render_as_string(False))
    error, seconds = evaluate_failure(trained, monkeypatch)
    assert isinstance(error, ConnectionProblem) and isinstance(error, PermanentError) and not is_transient(error)
    assert str(error) == (
        f"Connection 'churn_warehouse': the password was refused by PostgreSQL at {wrong.host}:{wrong.port} for "
        f"user '{PASSWORD_LOGIN}' (database '{wrong.database}'); fix the Connection's password field"
    )
    assert seconds < 10
    assert SECRET[::-1] not in str(error)
    assert_evaluation_recorded_nothing(trained, error)


def test_an_unreachable_warehouse_fails_evaluate_after_the_connect_time_out(
    trained, silent_server, monkeypatch, tmp_path: Path
):
    config = tmp_path / "pipeline.yaml"
    bundled = (Path(__file__).parents[2] / "include" / "churn" / "pipeline.yaml").read_text()
    config.write_text(bundled.replace("connect_seconds: 10", "connect_seconds: 2"))
    monkeypatch.setenv("CHURN_PIPELINE_CONFIG", str(config))
    url = f"postgresql://churn:{SECRET}@127.0.0.1:{silent_server}/warehouse"
    monkeypatch.setenv("AIRFLOW_CONN_CHURN_WAREHOUSE", url)
    error, seconds = evaluate_failure(trained, monkeypatch)
    assert isinstance(error, WarehouseError) and is_transient(error)  # Airflow retries it
    assert 2 <= seconds < 10
    assert f"127.0.0.1:{silent_server}" in str(error) and "timeout expired" in str(error)
    assert_evaluation_recorded_nothing(trained, error)


def test_a_refused_source_password_fails_ingest_naming_the_sources_connection(
    password_login, tmp_path, monkeypatch
):
    from churn.ingest import land_snapshot
    from churn.sources import parse_source

    wrong = password_login.set(password="not-the-password")
    monkeypatch.setenv("AIRFLOW_CONN_CHURN_SOURCE", wrong.set(drivername="postgresql").render_as_string(False))
    with pytest.raises(ConnectionProblem) as refused:
        land_snapshot(parse_source("sql://churn_source/customers"), tmp_path / "raw", "training")
    assert str(refused.value).startswith("Connection 'churn_source': the password was refused by PostgreSQL at ")
    assert str(refused.value).endswith("; fix the Connection's password field")
    assert not (tmp_path / "raw").exists()


def test_sessions_take_the_configured_time_outs_and_a_connections_own_win(postgres_url):
    timeouts = DatabaseTimeouts(connect_seconds=3, lock_seconds=7, statement_seconds=120)
    own = sa.engine.make_url(postgres_url).update_query_dict({"options": "-c lock_timeout=5s"})
    for url, lock in ((postgres_url, "7s"), (own.render_as_string(hide_password=False), "5s")):
        engine = warehouse_engine(url, timeouts)
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == lock
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "2min"
            assert connection.connection.driver_connection.info.get_parameters()["connect_timeout"] == "3"
        engine.dispose()


@pytest.fixture
def scored_date(postgres_url) -> Iterator[sa.Engine]:
    """The PostgreSQL warehouse holding three scores for SCORE_DATE."""
    engine = warehouse_engine(postgres_url)
    table = scores_table(sa.MetaData(), "churn_scores", None)
    table.drop(engine, checkfirst=True)
    replace_scores(engine, table, SCORE_DATE, score_rows(["a", "b", "c"], version="1"))
    engine.dispose()
    yield postgres_url
    engine = warehouse_engine(postgres_url)
    table.drop(engine, checkfirst=True)
    engine.dispose()


@contextlib.contextmanager
def lock_held(url: str) -> Iterator[None]:
    """Another session holding an ACCESS EXCLUSIVE lock on churn_scores meanwhile."""
    holder = sa.create_engine(url)
    try:
        with holder.connect() as connection:
            connection.exec_driver_sql("LOCK TABLE churn_scores IN ACCESS EXCLUSIVE MODE")
            yield
            connection.rollback()
    finally:
        holder.dispose()


def publish_again(url: str, timeouts: DatabaseTimeouts) -> None:
    """Score SCORE_DATE again, with another version's rows."""
    engine = warehouse_engine(url, timeouts)
    table = scores_table(sa.MetaData(), "churn_scores", None)
    try:
        replace_scores(engine, table, SCORE_DATE, score_rows(["z"], version="2"))
    finally:
        engine.dispose()


def assert_the_dates_scores_kept(url: str) -> None:
    kept = stored_scores(url, SCORE_DATE)
    assert list(kept["customer_id"]) == ["a", "b", "c"] and set(kept["model_version"]) == {"1"}


def test_a_lock_another_session_holds_fails_publishing_within_the_lock_time_out(scored_date):
    started = time.monotonic()
    with lock_held(scored_date), pytest.raises(WarehouseError) as failed:
        publish_again(scored_date, DatabaseTimeouts(lock_seconds=1))
    assert time.monotonic() - started < 10
    assert is_transient(failed.value)  # Airflow retries it
    assert str(failed.value).startswith(
        f"publishing the scores for {SCORE_DATE} in churn_scores at postgresql+psycopg://postgres@"
    )
    assert (
        "the date's earlier rows are unchanged (another session held a lock it needs for longer than "
        "database_timeouts.lock_seconds in pipeline.yaml allows; a retry tries again): "
        "(psycopg.errors.LockNotAvailable) canceling statement due to lock timeout"
    ) in str(failed.value)
    assert_the_dates_scores_kept(scored_date)
    publish_again(scored_date, DatabaseTimeouts(lock_seconds=1))  # the lock released, the retry publishes
    assert list(stored_scores(scored_date, SCORE_DATE)["customer_id"]) == ["z"]


def test_a_tasks_time_out_ends_a_wait_for_a_lock(scored_date):
    """Airflow's execution_timeout raises in the task's main thread (SIGALRM): psycopg's wait
    for the lock lets it through, so a stopped task does not wait out lock_seconds."""
    from airflow.sdk.exceptions import AirflowTaskTimeout
    from airflow.sdk.execution_time.timeout import timeout

    started = time.monotonic()
    with lock_held(scored_date), pytest.raises(AirflowTaskTimeout), timeout(2):
        publish_again(scored_date, DatabaseTimeouts(lock_seconds=600))
    assert time.monotonic() - started < 10
    assert_the_dates_scores_kept(scored_date)


def test_sqlite_waits_for_another_writer_no_longer_than_the_lock_time_out(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    table = scores_table(sa.MetaData(), "churn_scores", None)
    engine = warehouse_engine(url, DatabaseTimeouts(lock_seconds=1))
    replace_scores(engine, table, SCORE_DATE, score_rows(["a", "b"], version="1"))
    holder = sqlite3.connect(tmp_path / "warehouse.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    started = time.monotonic()
    try:
        with pytest.raises(WarehouseError) as failed:
            replace_scores(engine, table, SCORE_DATE, score_rows(["z"], version="2"))
    finally:
        holder.close()
        engine.dispose()
    assert 1 <= time.monotonic() - started < 10
    assert "database is locked" in str(failed.value) and is_transient(failed.value)
    assert list(stored_scores(url, SCORE_DATE)["customer_id"]) == ["a", "b"]
