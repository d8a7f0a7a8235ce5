from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from churn.settings import (
    load_settings,
    redact_text,
    redact_url,
    safe_path_part,
    sqlalchemy_url_from_connection,
    tracking_uri_from_connection,
    validated_identifier,
)


def test_defaults_keep_all_state_under_churn_home(tmp_path: Path):
    settings = load_settings({"CHURN_HOME": str(tmp_path)})
    assert settings.warehouse_url == f"sqlite:///{tmp_path / 'warehouse.db'}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert settings.run_dir("2026-11-29", "manual__2026-11-29T02:00:00+00:00").is_relative_to(tmp_path)


def test_environment_overrides_the_embedded_defaults(tmp_path: Path):
    settings = load_settings(
        {
            "CHURN_HOME": str(tmp_path),
            "CHURN_WAREHOUSE_URL": "postgresql+psycopg://warehouse/churn",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        }
    )
    assert settings.warehouse_url == "postgresql+psycopg://warehouse/churn"
    assert settings.mlflow_tracking_uri == "http://mlflow:5000"


def test_run_ids_become_safe_folder_names():
    assert safe_path_part("scheduled__2026-11-29T02:00:00+00:00") == "scheduled__2026-11-29T02_00_00_00_00"
    assert "/" not in safe_path_part("../../etc")


def test_postgres_connection_becomes_a_psycopg_url():
    url = sqlalchemy_url_from_connection("postgres", "db.internal", "churn", "s3cr3t", 5432, "warehouse")
    assert url == "postgresql+psycopg://churn:s3cr3t@db.internal:5432/warehouse"


def test_postgres_extras_reach_libpq_but_airflow_keys_do_not():
    extra = {
        "sslmode": "verify-full",
        "sslrootcert": "/certs/ca.pem",
        "connect_timeout": 10,
        "cursor": "dictcursor",
        "iam": True,
        "aws_conn_id": "aws_default",
    }
    url = sqlalchemy_url_from_connection("postgres", "db.internal", "churn", "s3cr3t", 5432, "warehouse", extra)
    assert dict(make_url(url).query) == {
        "sslmode": "verify-full",
        "sslrootcert": "/certs/ca.pem",
        "connect_timeout": "10",
    }
    assert make_url(url).password == "s3cr3t"


def test_redacted_postgres_url_keeps_extras_and_hides_the_password():
    url = sqlalchemy_url_from_connection("postgres", "h", "u", "s3cr3t", None, "db", {"sslmode": "require"})
    assert "s3cr3t" not in redact_url(url)
    assert "sslmode=require" in redact_url(url)


def test_libpq_extras_are_not_given_to_other_databases():
    url = sqlalchemy_url_from_connection("mysql", "h", "u", "p", 3306, "db", {"sslmode": "require"})
    assert url == "mysql+pymysql://u:p@h:3306/db"


def test_sqlite_connection_uses_its_host_as_the_file():
    assert sqlalchemy_url_from_connection("sqlite", "/data/wh.db") == "sqlite:////data/wh.db"


def test_sqlite_uri_connection_carries_the_file_as_its_schema():
    # AIRFLOW_CONN_X='sqlite:////data/wh.db' parses to an empty host and schema '/data/wh.db'.
    assert sqlalchemy_url_from_connection("sqlite", "", schema="/data/wh.db") == "sqlite:////data/wh.db"


def test_connection_typed_with_a_sqlalchemy_driver_keeps_it():
    url = sqlalchemy_url_from_connection("postgresql+psycopg", "h", "u", "p@ss", 5432, "db")
    assert url == "postgresql+psycopg://u:p%40ss@h:5432/db"


def test_explicit_sqlalchemy_url_in_extras_wins():
    url = sqlalchemy_url_from_connection("generic", None, extra={"sqlalchemy_url": "duckdb:///x.db"})
    assert url == "duckdb:///x.db"


def test_unsupported_connection_type_is_named():
    with pytest.raises(ValueError, match="'ftp'"):
        sqlalchemy_url_from_connection("ftp", "host")


@pytest.mark.parametrize("name", ["churn_scores", "_x", "Scores2026"])
def test_plain_identifiers_are_accepted(name):
    assert validated_identifier(name) == name


@pytest.mark.parametrize("name", ["scores; drop table x", "a-b", "1scores", "", "x" * 64, 'sc"ores'])
def test_identifiers_that_could_inject_sql_are_refused(name):
    with pytest.raises(ValueError, match="not a valid SQL identifier"):
        validated_identifier(name)


def test_overrides_replace_only_given_values(tmp_path: Path):
    settings = load_settings({"CHURN_HOME": str(tmp_path)})
    changed = settings.overridden(warehouse_url="postgresql+psycopg://w/db", mlflow_tracking_uri=None)
    assert changed.warehouse_url == "postgresql+psycopg://w/db"
    assert changed.mlflow_tracking_uri == settings.mlflow_tracking_uri


def test_mlflow_credentials_stay_out_of_repr_and_the_environment_is_left_to_mlflow(tmp_path: Path):
    settings = load_settings({"CHURN_HOME": str(tmp_path), "MLFLOW_TRACKING_PASSWORD": "t0ps3cret"})
    assert settings.mlflow_password is None
    with_login = settings.overridden(mlflow_username="bob", mlflow_password="t0ps3cret")
    assert "t0ps3cret" not in repr(with_login)
    assert "bob" not in repr(with_login)


@pytest.mark.parametrize(
    ("host", "port", "schema", "uri"),
    [
        ("mlflow", 5000, None, "http://mlflow:5000"),
        ("mlflow.example.org", None, "https", "https://mlflow.example.org"),
        ("https://mlflow.example.org/", None, None, "https://mlflow.example.org"),
    ],
)
def test_mlflow_connection_becomes_a_tracking_uri(host, port, schema, uri):
    assert tracking_uri_from_connection(host, port, schema) == uri


def test_https_uri_connection_keeps_its_scheme():
    # AIRFLOW_CONN_CHURN_MLFLOW=https://mlflow.example.org parses to conn_type "https".
    assert tracking_uri_from_connection("mlflow.example.org", None, None, "https") == "https://mlflow.example.org"


def test_credentials_in_free_text_are_masked():
    text = "API request to https://bob:t0ken@mlflow:5000/api failed; db postgresql+psycopg://u:pw@h/db"
    assert (
        redact_text(text)
        == "API request to https://bob:***@mlflow:5000/api failed; db postgresql+psycopg://u:***@h/db"
    )


def test_mlflow_connection_without_host_is_refused():
    with pytest.raises(ValueError, match="host"):
        tracking_uri_from_connection("")
