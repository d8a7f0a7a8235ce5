"""Airflow Connections reach the pipeline whole, through the provider's hooks, and only in the
task that uses them; a broken one names itself and the field to fix."""

from __future__ import annotations

import json
import os

import pytest
from sqlalchemy.engine import make_url

from churn.airflow_connections import ConnectionProblem, database_url, mlflow_server, task_settings
from churn.settings import Settings
from tests.conftest import ingest_for, run_parameters


def test_use_mlflow_exports_the_connection_login(settings: Settings, monkeypatch: pytest.MonkeyPatch):
    from churn.tracking import use_mlflow

    # An older login in the environment: the Connection's must win, and monkeypatch restores it.
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "stale")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "stale")
    use_mlflow(settings.overridden(mlflow_username="bob", mlflow_password="t0ps3cret"))
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "bob"
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "t0ps3cret"


def test_mlflow_uri_connection_gives_the_tracking_uri_and_login(churn_home, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AIRFLOW_CONN_CHURN_MLFLOW", "http://user:pa%24%24@mlflow.example:5000")
    settings = task_settings(mlflow=True)
    assert settings.mlflow_tracking_uri == "http://mlflow.example:5000"
    assert (settings.mlflow_username, settings.mlflow_password) == ("user", "pa$$")


@pytest.mark.parametrize(
    ("connection", "uri"),
    [
        ('{"conn_type": "http", "host": "mlflow", "port": 5000}', "http://mlflow:5000"),
        ('{"conn_type": "http", "host": "mlflow.example.org", "schema": "https"}', "https://mlflow.example.org"),
        ('{"conn_type": "http", "host": "https://mlflow.example.org/"}', "https://mlflow.example.org"),
        ("https://mlflow.example.org", "https://mlflow.example.org"),
    ],
    ids=["form", "https-schema", "url-as-host", "https-uri"],
)
def test_mlflow_connection_becomes_a_tracking_uri(monkeypatch: pytest.MonkeyPatch, connection: str, uri: str):
    monkeypatch.setenv("AIRFLOW_CONN_CHURN_MLFLOW", connection)
    assert mlflow_server()[0] == uri


@pytest.mark.parametrize(
    "connection",
    [
        "postgres://churn:s3cr3t@db.internal:5432/warehouse?sslmode=require&cursor=dictcursor",
        '{"conn_type": "postgres", "host": "db.internal", "login": "churn", "password": "s3cr3t", "port": 5432, '
        '"schema": "warehouse", "extra": {"sslmode": "require", "cursor": "dictcursor"}}',
    ],
    ids=["uri", "json"],
)
def test_warehouse_connection_extras_reach_the_url(churn_home, monkeypatch: pytest.MonkeyPatch, connection: str):
    monkeypatch.setenv("AIRFLOW_CONN_CHURN_WAREHOUSE", connection)
    url = make_url(task_settings(warehouse=True).warehouse_url)
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database, url.password) == ("db.internal", 5432, "warehouse", "s3cr3t")
    assert dict(url.query) == {"sslmode": "require"}


def test_libpq_extras_pass_and_airflow_only_extras_stay_out(monkeypatch: pytest.MonkeyPatch):
    extra = {
        "sslmode": "verify-full",
        "sslrootcert": "/certs/ca.pem",
        "connect_timeout": 10,
        "keepalives": True,
        "cursor": "dictcursor",
        "iam": False,
        "aws_conn_id": "aws_default",
        "sqlalchemy_scheme": "postgresql+psycopg",
    }
    connection = {
        "conn_type": "postgres",
        "host": "h",
        "login": "u",
        "password": "p",
        "schema": "db",
        "extra": extra,
    }
    monkeypatch.setenv("AIRFLOW_CONN_CRM", json.dumps(connection))
    assert dict(make_url(database_url("crm")).query) == {
        "sslmode": "verify-full",
        "sslrootcert": "/certs/ca.pem",
        "connect_timeout": "10",
        "keepalives": "1",
    }


def test_a_connection_typed_with_a_sqlalchemy_driver_keeps_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AIRFLOW_CONN_CRM", "postgresql+psycopg://u:p%40ss@h:5432/db")
    assert database_url("crm") == "postgresql+psycopg://u:p%40ss@h:5432/db"


@pytest.mark.parametrize(
    ("connection", "url"),
    [
        ('{"conn_type": "sqlite", "host": "/data/wh.db"}', "sqlite:////data/wh.db"),
        # A URI parses to an empty host with the file as its schema.
        ("sqlite:////data/wh.db", "sqlite:////data/wh.db"),
        ('{"conn_type": "generic", "extra": {"sqlalchemy_url": "duckdb:///x.db"}}', "duckdb:///x.db"),
    ],
)
def test_other_databases(monkeypatch: pytest.MonkeyPatch, connection: str, url: str):
    monkeypatch.setenv("AIRFLOW_CONN_CRM", connection)
    assert database_url("crm") == url


def test_a_postgres_connection_without_host_uses_the_local_socket(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AIRFLOW_CONN_CRM", '{"conn_type": "postgres", "login": "churn", "schema": "warehouse"}')
    url = make_url(database_url("crm"))
    assert (url.host, url.username, url.database) == (None, "churn", "warehouse")


def test_libpq_passwords_stay_out_of_the_url(monkeypatch: pytest.MonkeyPatch):
    extra = {"sslmode": "verify-full", "sslkey": "/certs/client.key", "sslpassword": "k3y-s3cret"}
    connection = {"conn_type": "postgres", "host": "h", "login": "u", "password": "p", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_CRM", json.dumps(connection))
    url = database_url("crm")
    assert "k3y-s3cret" not in url
    assert dict(make_url(url).query) == {"sslmode": "verify-full", "sslkey": "/certs/client.key"}


def test_an_undefined_connection_leaves_the_environments_settings(churn_home):
    assert database_url("nobody_defined_this") is None
    assert task_settings(warehouse=True, mlflow=True) == task_settings()


@pytest.mark.parametrize(
    ("conn_id", "connection", "field"),
    [
        (
            "churn_warehouse",
            '{"conn_type": "postgres", "host": "db", "extra": {"sqlalchemy_scheme": "mysql"}}',
            "the extra field is not usable",
        ),
        (
            "churn_warehouse",
            '{"conn_type": "generic", "extra": {"sqlalchemy_url": "not a url"}}',
            "the extra 'sqlalchemy_url' is not a SQLAlchemy URL",
        ),
        (
            "churn_warehouse",
            '{"conn_type": "postgres", "host": "db", "port": "abc"}',
            "the environment variable AIRFLOW_CONN_CHURN_WAREHOUSE is set but Airflow cannot read it",
        ),
        (
            "churn_warehouse",
            "{not json",
            "the environment variable AIRFLOW_CONN_CHURN_WAREHOUSE is set but Airflow cannot read it",
        ),
        ("churn_warehouse", '{"conn_type": "ftp", "host": "files"}', "the Connection Type 'ftp' is not supported"),
        ("churn_warehouse", '{"conn_type": "sqlite"}', "the Host field is empty"),
        ("churn_mlflow", '{"conn_type": "http"}', "the Host field is empty"),
    ],
)
def test_a_broken_connection_names_itself_and_the_field(
    churn_home, monkeypatch: pytest.MonkeyPatch, conn_id: str, connection: str, field: str
):
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection)
    with pytest.raises(ConnectionProblem, match=rf"Connection '{conn_id}': {field}"):
        task_settings(warehouse=True, mlflow=True)


def test_ingest_does_not_read_the_mlflow_connection(churn_home, source_files, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AIRFLOW_CONN_CHURN_MLFLOW", '{"conn_type": "http"}')  # no host: unusable
    monkeypatch.setenv("AIRFLOW_CONN_CHURN_WAREHOUSE", '{"conn_type": "ftp"}')  # unusable too
    landed = ingest_for(None, run_parameters(source_files["training"], source_files["scoring"]))
    assert landed.training.path.is_file() and landed.scoring.path.is_file()


def test_a_task_that_uses_a_broken_connection_fails_and_records_it(trained_run, monkeypatch: pytest.MonkeyPatch):
    from churn.manifest import read_manifests
    from churn.train import run_train

    monkeypatch.setenv("AIRFLOW_CONN_CHURN_MLFLOW", '{"conn_type": "http"}')
    with pytest.raises(ConnectionProblem, match="Connection 'churn_mlflow': the Host field is empty"):
        run_train(trained_run.features.model_dump(mode="json"))
    failure = read_manifests(trained_run.features.run.run_dir).pop("failed")
    assert failure.phase == "train" and "churn_mlflow" in failure.error
