"""Airflow Connections, read through Airflow's own hooks: the package's one door to Airflow.

Every function here resolves one Connection when it is called, and only then, so a task
reads exactly the Connections it uses: ``ingest`` never fails over an incomplete MLflow
Connection. A Connection that is defined but unusable fails the task that uses it, with a
message naming the Connection and the field to fix. Where Airflow is not installed, or a
Connection is not defined, the environment's settings (:mod:`churn.settings`) apply.
"""

from __future__ import annotations

from typing import Any

from churn.errors import PermanentError
from churn.settings import Settings, load_settings

WAREHOUSE_CONNECTION = "churn_warehouse"
MLFLOW_CONNECTION = "churn_mlflow"


class ConnectionProblem(PermanentError, ValueError):
    """An Airflow Connection is defined but cannot be used; the message names it and the field."""


def airflow_connection(conn_id: str) -> Any | None:
    """The Airflow Connection ``conn_id``, or None when it is not defined (or Airflow is absent)."""
    try:
        from airflow.sdk import BaseHook
        from airflow.sdk.exceptions import AirflowNotFoundException
    except ImportError:
        return None
    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return None


def _libpq_value(value: Any) -> str:
    # libpq spells booleans (keepalives) as 1 and 0.
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _postgres_url(conn_id: str, connection: Any) -> str:
    """The SQLAlchemy URL the Postgres provider's hook builds, with the Connection's libpq
    parameters (``sslmode``, ``connect_timeout``...) kept: the hook passes them to libpq
    itself but leaves them out of its URL. Airflow's own extras stay out, by the hook's list."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    if not connection.host:
        raise ConnectionProblem(f"Connection {conn_id!r}: the Host field is empty; set the database server's host")
    conn_type = connection.conn_type
    hook = PostgresHook(postgres_conn_id=conn_id, sqlalchemy_scheme=conn_type if "+" in conn_type else None)
    libpq = {
        key: _libpq_value(value)
        for key, value in connection.extra_dejson.items()
        if key not in PostgresHook.ignored_extra_options
    }
    return hook.sqlalchemy_url.update_query_dict(libpq).render_as_string(hide_password=False)


def database_url(conn_id: str) -> str | None:
    """SQLAlchemy URL of the database Connection ``conn_id``, or None when it is not defined.

    PostgreSQL goes through the Postgres provider's hook; SQLite takes the file path from
    the Host field (or the path of a ``sqlite:////...`` URI); any other database takes a
    SQLAlchemy URL from the extra ``sqlalchemy_url``, which also wins over the fields.
    """
    connection = airflow_connection(conn_id)
    if connection is None:
        return None
    extra = connection.extra_dejson
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    conn_type = connection.conn_type or ""
    if conn_type in {"postgres", "postgresql"} or conn_type.startswith("postgresql+"):
        return _postgres_url(conn_id, connection)
    if conn_type == "sqlite":
        database = connection.host or connection.schema
        if not database:
            raise ConnectionProblem(
                f"Connection {conn_id!r}: the Host field is empty; set it to the SQLite database file's path"
            )
        return f"sqlite:///{database}"
    raise ConnectionProblem(
        f"Connection {conn_id!r}: the Connection Type {conn_type!r} is not supported; use postgres or "
        "sqlite, or put a SQLAlchemy URL in the extra field 'sqlalchemy_url'"
    )


def mlflow_server(conn_id: str = MLFLOW_CONNECTION) -> tuple[str, str | None, str | None] | None:
    """(tracking URI, login, password) of the MLflow Connection, or None when it is not defined.

    The scheme comes from the Schema field (the Connection form) or, for a URI such as
    ``AIRFLOW_CONN_CHURN_MLFLOW=https://...``, from the type Airflow parsed it to.
    """
    connection = airflow_connection(conn_id)
    if connection is None:
        return None
    host = connection.host
    if not host:
        raise ConnectionProblem(f"Connection {conn_id!r}: the Host field is empty; set the MLflow server's host")
    if "://" in host:
        uri = host.rstrip("/")
    else:
        scheme = next((s for s in (connection.schema, connection.conn_type) if s in {"http", "https"}), "http")
        uri = f"{scheme}://{host}{f':{connection.port}' if connection.port else ''}"
    return uri, connection.login or None, connection.password or None


def task_settings(*, warehouse: bool = False, mlflow: bool = False) -> Settings:
    """The environment's settings with the warehouse and MLflow Connections applied, each
    only when asked for and defined."""
    settings = load_settings()
    if warehouse:
        settings = settings.overridden(warehouse_url=database_url(WAREHOUSE_CONNECTION))
    server = mlflow_server() if mlflow else None
    if server is not None:
        uri, username, password = server
        settings = settings.overridden(mlflow_tracking_uri=uri, mlflow_username=username, mlflow_password=password)
    return settings
