"""Airflow Connections, read through Airflow's own hooks (with ``errors``, the package's only
contact with Airflow).

Every function here resolves one Connection when it is called, and only then, so a task
reads exactly the Connections it uses: ``ingest`` never fails over an incomplete MLflow
Connection. A Connection that is defined but unusable fails the task that uses it, at once,
with a message naming the Connection and the field to fix. Where a Connection is not
defined, the environment's settings (:mod:`churn.settings`) apply.
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

from churn.errors import PermanentError
from churn.settings import Settings, load_settings, redact_text

WAREHOUSE_CONNECTION = "churn_warehouse"
MLFLOW_CONNECTION = "churn_mlflow"


class ConnectionProblem(PermanentError, ValueError):
    """An Airflow Connection is defined but cannot be used; the message names it and the field."""


# What PostgreSQL answers when it refuses a login, what that means, and the Connection field
# (or URL part) that fixes it. A retry never helps: the task fails at once.
_REFUSED_LOGINS = (
    (re.compile(r"password authentication failed|no password supplied"), "the password was refused", "password"),
    (re.compile(r'role "[^"]*" does not exist'), "no such user exists", "login"),
    (re.compile(r'database "[^"]*" does not exist'), "the database does not exist", "schema"),
)


def refused_login(error: BaseException, url: Any, conn_id: str | None, variable: str) -> ConnectionProblem | None:
    """A :class:`ConnectionProblem` naming the Connection ``conn_id`` (else the environment
    ``variable`` the URL came from) and the field to fix, if ``error`` is PostgreSQL refusing the
    login of ``url`` (a SQLAlchemy URL); None for any other error."""
    for pattern, refusal, field in _REFUSED_LOGINS:
        if pattern.search(str(error)):
            where = f"{url.host or 'the local socket'}{f':{url.port}' if url.port else ''}"
            owner, fix = (
                (f"Connection {conn_id!r}", f"fix the Connection's {field} field")
                if conn_id
                else (f"the URL in {variable}", f"fix the {field} in {variable}")
            )
            return ConnectionProblem(
                redact_text(
                    f"{owner}: {refusal} by PostgreSQL at {where} for user {url.username!r} "
                    f"(database {url.database!r}); {fix}"
                )
            )
    return None


class MlflowServer(NamedTuple):
    tracking_uri: str
    username: str | None
    password: str | None


def airflow_connection(conn_id: str) -> Any | None:
    """The Airflow Connection ``conn_id``, or None when it is not defined.

    Airflow treats an ``AIRFLOW_CONN_<ID>`` variable it cannot parse as no Connection at all;
    here that is an error, or the pipeline would quietly use its embedded defaults instead.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        variable = f"AIRFLOW_CONN_{conn_id.upper()}"
        if os.environ.get(variable):
            raise ConnectionProblem(
                f"Connection {conn_id!r}: the environment variable {variable} is set but Airflow cannot read "
                "it; write it as a URI (postgresql://user:password@host:5432/db) or as JSON with conn_type"
            ) from None
        return None


def _libpq_value(value: Any) -> str:
    # libpq spells booleans (keepalives) as 1 and 0.
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _postgres_url(conn_id: str, connection: Any) -> str:
    """The SQLAlchemy URL the Postgres provider's hook builds, with the Connection's libpq
    parameters (``sslmode``, ``connect_timeout``...) kept: the hook hands its extras to libpq
    when it connects itself, but leaves them out of its URL. Extras the hook uses itself stay
    out, by its own list, and so does ``sslpassword``: SQLAlchemy prints a URL's query whole."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    conn_type = connection.conn_type
    try:
        hook = PostgresHook(postgres_conn_id=conn_id, sqlalchemy_scheme=conn_type if "+" in conn_type else None)
        url = hook.sqlalchemy_url
    except (TypeError, ValueError) as error:  # the hook's own checks of sqlalchemy_scheme and _query
        raise ConnectionProblem(f"Connection {conn_id!r}: the extra field is not usable: {error}") from error
    libpq = {
        key: _libpq_value(value)
        for key, value in connection.extra_dejson.items()
        if key not in PostgresHook.ignored_extra_options and "password" not in key
    }
    return url.update_query_dict(libpq).render_as_string(hide_password=False)


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
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            return make_url(str(extra["sqlalchemy_url"])).render_as_string(hide_password=False)
        except ArgumentError as error:
            raise ConnectionProblem(
                f"Connection {conn_id!r}: the extra 'sqlalchemy_url' is not a SQLAlchemy URL ({error})"
            ) from error
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


def mlflow_server(conn_id: str = MLFLOW_CONNECTION) -> MlflowServer | None:
    """The MLflow server the Connection names, with its login, or None when it is not defined.

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
    return MlflowServer(uri, connection.login or None, connection.password or None)


def task_settings(*, warehouse: bool = False, mlflow: bool = False) -> Settings:
    """The environment's settings with the warehouse and MLflow Connections applied, each
    only when asked for and defined."""
    settings = load_settings()
    if warehouse:
        url = database_url(WAREHOUSE_CONNECTION)
        settings = settings.overridden(warehouse_url=url, warehouse_conn_id=url and WAREHOUSE_CONNECTION)
    server = mlflow_server() if mlflow else None
    if server is not None:
        settings = settings.overridden(
            mlflow_tracking_uri=server.tracking_uri,
            mlflow_username=server.username,
            mlflow_password=server.password,
        )
    return settings
