"""Errors a retry cannot fix end the Airflow task at once; outages are retried.

The classification is checked on real failures: servers that are not there, that refuse or
answer "busy", locks held by another connection, SQL a database rejects, data a library
rejects. Nothing is mocked; where a server's answer matters, a small local server gives it.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import socket
import sqlite3
import struct
import threading
from collections.abc import Callable, Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from churn.airflow_connections import ConnectionProblem
from churn.contract import ContractError
from churn.documents import ConfigurationError
from churn.errors import PermanentError, PhaseError, is_transient, left_to_airflow
from churn.run_parameters import RunParameterError
from churn.score import ScoringError
from churn.sources import SourceError
from churn.tracking import DamagedModelError, ModelUnavailableError
from churn.validate import ContractViolation
from churn.warehouse import (
    PublishRefused,
    WarehouseError,
    replace_scores,
    scores_table,
    scoring_record,
    warehouse_engine,
)
from tests.conftest import free_port, score_rows


@pytest.mark.parametrize(
    "error",
    [
        SourceError,
        RunParameterError,
        ContractError,
        ConfigurationError,
        ContractViolation,
        ScoringError,
        ConnectionProblem,
        PublishRefused,
        DamagedModelError,
        PhaseError,
    ],
)
def test_errors_a_retry_cannot_fix_fail_the_task_without_retries(error):
    assert issubclass(error, AirflowFailException)


@pytest.mark.parametrize("error", [WarehouseError, ModelUnavailableError])
def test_outages_are_left_to_airflows_retries(error):
    """These wrap both outages and permanent failures: what they wrap decides (below)."""
    assert not issubclass(error, AirflowFailException)


def raised(action: Callable[[], object]) -> Exception:
    """The error ``action`` raises; the test fails if it raises none."""
    try:
        action()
    except Exception as error:
        return error
    pytest.fail("expected an error")


def closed_port_url(scheme: str) -> str:
    return f"{scheme}://127.0.0.1:{free_port()}"


# Outages: a retry may get past them.


def test_a_refused_connection_is_transient():
    error = raised(lambda: socket.create_connection(("127.0.0.1", free_port()), timeout=5))
    assert isinstance(error, ConnectionRefusedError)
    assert is_transient(error) and left_to_airflow(error)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_an_unreachable_postgresql_is_transient(driver):
    engine = sa.create_engine(f"postgresql+{driver}://churn:pw@127.0.0.1:{free_port()}/warehouse")
    error = raised(engine.connect)
    assert isinstance(error, sa.exc.OperationalError)
    assert is_transient(error)


def test_an_unreachable_warehouse_is_transient_through_its_wrapper():
    engine = warehouse_engine(f"postgresql+psycopg://churn:pw@127.0.0.1:{free_port()}/warehouse")
    table = scores_table(sa.MetaData(), "churn_scores", None)
    error = raised(lambda: scoring_record(engine, table, date(2026, 11, 29), "churn-classifier"))
    assert isinstance(error, WarehouseError)
    assert is_transient(error)


def test_a_locked_sqlite_database_is_transient(tmp_path: Path):
    database = tmp_path / "warehouse.db"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("CREATE TABLE scores (customer_id TEXT)")
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the write lock
    try:
        engine = sa.create_engine(f"sqlite:///{database}", connect_args={"timeout": 0})
        with engine.connect() as connection:
            error = raised(lambda: connection.exec_driver_sql("INSERT INTO scores VALUES ('a')"))
        engine.dispose()
    finally:
        holder.close()
    assert "database is locked" in str(error)
    assert is_transient(error)


@contextlib.contextmanager
def postgres_that_answers(sqlstate: str, message: str) -> Iterator[int]:
    """A local server that answers every PostgreSQL connection attempt with one FATAL error,
    as a real server does when it refuses a login or cannot take a connection now."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = server.accept()
                with connection:
                    (length,) = struct.unpack("!i", connection.recv(4))
                    connection.recv(length - 4)  # the startup message
                    fields = [(b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", message)]
                    body = b"".join(code + text.encode() + b"\0" for code, text in fields) + b"\0"
                    connection.sendall(b"E" + struct.pack("!i", len(body) + 4) + body)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def connect_error(driver: str, port: int) -> Exception:
    engine = sa.create_engine(f"postgresql+{driver}://churn:pw@127.0.0.1:{port}/warehouse?sslmode=disable")
    return raised(engine.connect)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [("53300", "sorry, too many clients already"), ("57P03", "the database system is starting up")],
)
def test_a_postgresql_that_cannot_take_a_connection_now_is_transient(driver, sqlstate, message):
    with postgres_that_answers(sqlstate, message) as port:
        error = connect_error(driver, port)
    assert message in str(error)
    assert is_transient(error)


class _Answering(BaseHTTPRequestHandler):
    """Answers GET /<status>/<mlflow error code> with that status and an MLflow error body."""

    def do_GET(self) -> None:
        _, status, code = self.path.split("/")[:3]
        body = json.dumps({"error_code": code or "INTERNAL_ERROR", "message": "as asked"}).encode()
        self.send_response(int(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_an_unreachable_or_silent_or_busy_http_server_is_transient(http_server):
    import requests

    assert is_transient(raised(lambda: requests.get(closed_port_url("http"), timeout=5)))
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        timed_out = raised(lambda: requests.get(address, timeout=0.2))
    assert isinstance(timed_out, requests.Timeout) and is_transient(timed_out)
    for status in (503, 429):
        assert is_transient(raised(requests.get(f"{http_server}/{status}/").raise_for_status))


@pytest.fixture
def mlflow_without_retries(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


def test_an_unreachable_or_busy_mlflow_server_is_transient(mlflow_without_retries, http_server):
    from mlflow import MlflowClient

    unreachable = closed_port_url("http")
    refused = raised(lambda: MlflowClient(unreachable, unreachable).get_registered_model("churn-classifier"))
    assert "failed with exception" in str(refused) and is_transient(refused)
    busy_server = f"{http_server}/503/TEMPORARILY_UNAVAILABLE"
    busy = raised(lambda: MlflowClient(busy_server, busy_server).get_registered_model("churn-classifier"))
    assert is_transient(busy)


def test_an_unreachable_registry_leaves_the_model_unavailable_not_damaged(mlflow_without_retries, monkeypatch):
    from mlflow.tracking._model_registry import utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    from churn.tracking import load_registered_model

    # What mlflow.set_registry_uri and set_tracking_uri set, put back after the test. The tracking
    # URI too: unset, MLflow would fall back to its default store, ./mlflow.db in the working folder.
    unreachable = closed_port_url("http")
    monkeypatch.setattr(utils, "_registry_uri", unreachable)
    monkeypatch.setattr(tracking_utils, "_tracking_uri", unreachable)
    error = raised(lambda: load_registered_model("churn-classifier", "1"))
    assert type(error) is ModelUnavailableError and is_transient(error)


def test_an_unreachable_object_store_is_transient():
    import boto3
    from botocore.config import Config

    # Placeholder keys: the request never leaves this machine.
    client = boto3.client(
        "s3",
        endpoint_url=closed_port_url("http"),
        aws_access_key_id="placeholder",
        aws_secret_access_key="placeholder",
        region_name="us-east-1",
        config=Config(retries={"max_attempts": 1}, connect_timeout=5),
    )
    error = raised(client.list_buckets)
    assert type(error).__name__ == "EndpointConnectionError" and is_transient(error)


# Permanent: the same input fails the same way again.


def test_sql_the_database_rejects_is_permanent(tmp_path: Path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    with engine.connect() as connection:
        syntax = raised(lambda: connection.exec_driver_sql("SELEC 1"))
        missing = raised(lambda: connection.exec_driver_sql("SELECT * FROM churn_scores"))
    engine.dispose()
    # SQLite reports both as OperationalError, the type that also reports a locked database.
    assert isinstance(syntax, sa.exc.OperationalError) and isinstance(missing, sa.exc.OperationalError)
    assert not is_transient(syntax) and not is_transient(missing)
    assert not left_to_airflow(syntax)


def test_a_write_the_warehouse_refuses_is_permanent_through_its_wrapper(tmp_path: Path):
    engine = warehouse_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    table = scores_table(sa.MetaData(), "churn_scores", None)
    error = raised(lambda: replace_scores(engine, table, date(2026, 11, 29), score_rows(["x", "y", "x"])))
    engine.dispose()
    assert isinstance(error, WarehouseError) and isinstance(error.__cause__, sa.exc.IntegrityError)
    assert not is_transient(error)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [
        ("28P01", 'password authentication failed for user "churn"'),
        ("3D000", 'database "warehouse" does not exist'),
    ],
)
def test_a_refused_login_or_an_unknown_database_is_permanent(driver, sqlstate, message):
    """A wrong password or database name arrives as the same connection error as an outage."""
    with postgres_that_answers(sqlstate, message) as port:
        error = connect_error(driver, port)
    assert isinstance(error, sa.exc.OperationalError) and message in str(error)
    assert not is_transient(error)


def test_data_and_model_errors_are_permanent(tmp_path: Path):
    from sklearn.model_selection import train_test_split

    from churn.storage import read_parquet

    frame = pd.DataFrame({"customerID": list("abcdef"), "Churn": ["No"] * 5 + ["Yes"]})
    not_parquet = tmp_path / "features.parquet"
    not_parquet.write_text("customerID,Churn\n")
    errors = [
        raised(lambda: train_test_split(frame, test_size=0.5, stratify=frame["Churn"])),  # one churner
        raised(lambda: frame["tenure"]),
        raised(lambda: read_parquet(not_parquet)),
        raised(lambda: (tmp_path / "absent.csv").read_text()),
        raised(lambda: pickle.loads(b"this is not a model")),
    ]
    assert [type(error).__name__ for error in errors] == [
        "ValueError",
        "KeyError",
        "ArrowInvalid",
        "FileNotFoundError",
        "UnpicklingError",
    ]
    assert not any(is_transient(error) for error in errors)


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, "INVALID_PARAMETER_VALUE"), (401, "UNAUTHENTICATED"), (404, "RESOURCE_DOES_NOT_EXIST")],
)
def test_an_mlflow_request_the_server_rejects_is_permanent(mlflow_without_retries, http_server, status, code):
    from mlflow import MlflowClient

    server = f"{http_server}/{status}/{code}"
    error = raised(lambda: MlflowClient(server, server).get_registered_model("churn-classifier"))
    assert code in str(error) and not is_transient(error)


def test_a_missing_registered_model_is_damaged_not_unavailable(churn_home, settings):
    from churn.tracking import load_registered_model, use_mlflow

    use_mlflow(settings)
    error = raised(lambda: load_registered_model("churn-classifier", "7"))
    assert isinstance(error, DamagedModelError) and isinstance(error, ModelUnavailableError)
    assert left_to_airflow(error)  # already permanent: run_phase passes it on as it is


def test_an_error_known_to_be_permanent_stays_permanent_whatever_it_wraps():
    refused = raised(lambda: socket.create_connection(("127.0.0.1", free_port()), timeout=5))

    def unusable_connection():
        raise ConnectionProblem("Connection 'churn_warehouse': the Host field is empty") from refused

    def refused_for_good():
        try:
            raise refused
        except ConnectionRefusedError:
            raise ValueError("no such source") from None

    def failed_while_handling_an_outage():
        try:
            raise refused
        except ConnectionRefusedError:
            # Raised while handling the outage, as the traceback shows: the outage is what happened.
            raise RuntimeError("could not read the table")  # noqa: B904

    assert not is_transient(raised(unusable_connection))
    assert not is_transient(raised(refused_for_good))
    assert is_transient(raised(failed_while_handling_an_outage))


def test_airflows_own_exceptions_are_left_to_airflow():
    assert left_to_airflow(AirflowSkipException("nothing to do"))
    assert left_to_airflow(ScoringError("no model carries the alias 'champion'"))
    assert not left_to_airflow(ValueError("single class"))


def test_a_phase_error_names_the_phase_and_survives_pickling():
    error = PhaseError("train", "ValueError", "the least populated class in y has only 1 member")
    assert str(error) == (
        "train failed with ValueError, which a retry cannot fix: the least populated class in y has only 1 member"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.phase) == (PhaseError, str(error), "train")
    assert isinstance(copy, PermanentError)


# PostgreSQL's own answers to statements (needs CHURN_TEST_POSTGRES_URL).


def test_postgresql_lock_timeouts_are_transient_and_syntax_errors_permanent(postgres_url):
    engine = sa.create_engine(postgres_url)
    name = f"fail_fast_{free_port()}"
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"CREATE TABLE {name} (id int)")
        with engine.connect() as holder, engine.connect() as waiter:
            holder.begin()
            holder.exec_driver_sql(f"LOCK TABLE {name} IN ACCESS EXCLUSIVE MODE")
            waiter.begin()
            waiter.exec_driver_sql("SET LOCAL lock_timeout = '50ms'")  # as publishing sets it
            timed_out = raised(lambda: waiter.exec_driver_sql(f"SELECT * FROM {name}"))
            holder.rollback()
            waiter.rollback()
            syntax = raised(lambda: waiter.exec_driver_sql("SELEC 1"))
    finally:
        with engine.begin() as connection:
            connection.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        engine.dispose()
    assert "lock timeout" in str(timed_out) and is_transient(timed_out)
    assert isinstance(syntax, sa.exc.ProgrammingError) and not is_transient(syntax)
