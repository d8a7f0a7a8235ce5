"""Configuration in one place: ``pipeline.yaml`` for behaviour, the environment for places.

Environment variables (all optional; the defaults make an embedded single-machine setup):

``CHURN_HOME``
    Folder that holds all local state: sources, run folders, the SQLite warehouse and the
    local MLflow store. Defaults to ``.churn`` in the project folder.
``CHURN_WAREHOUSE_URL``
    SQLAlchemy URL of the warehouse when no Airflow Connection ``churn_warehouse`` exists.
``MLFLOW_TRACKING_URI``
    MLflow tracking and registry server; defaults to a SQLite store under ``CHURN_HOME``.
``MLFLOW_TRACKING_USERNAME``, ``MLFLOW_TRACKING_PASSWORD``
    Basic-auth login for an MLflow server that requires one (read by MLflow itself).

Inside Airflow, the Connections ``churn_warehouse`` and ``churn_mlflow`` (address and
login) win over these.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

PROJECT_DIR = Path(__file__).resolve().parents[2]
SQL_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

# Airflow connection types mapped to the SQLAlchemy driver that speaks to them.
SQLALCHEMY_DRIVERS = {
    "postgres": "postgresql+psycopg",
    "postgresql": "postgresql+psycopg",
    "sqlite": "sqlite",
    "mysql": "mysql+pymysql",
}
# libpq parameters that Airflow's Postgres form keeps in extras; its other extras (cursor, iam, ...)
# would make libpq refuse to connect. sslpassword stays out: redact_url would print it.
LIBPQ_EXTRAS = frozenset(
    {
        "sslmode",
        "sslrootcert",
        "sslcert",
        "sslkey",
        "sslcrl",
        "connect_timeout",
        "application_name",
        "options",
        "target_session_attrs",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "client_encoding",
        "gssencmode",
        "channel_binding",
    }
)


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    warehouse_url: str
    mlflow_tracking_uri: str
    mlflow_artifact_root: Path
    pipeline: dict[str, Any]
    # Basic-auth credentials for the MLflow server, from the churn_mlflow Connection.
    mlflow_username: str | None = None
    mlflow_password: str | None = None

    def __repr__(self) -> str:
        # URLs and the MLflow login may carry passwords; a logged Settings must not.
        return (
            f"Settings(state_dir={str(self.state_dir)!r}, warehouse_url={redact_url(self.warehouse_url)!r}, "
            f"mlflow_tracking_uri={redact_url(self.mlflow_tracking_uri)!r})"
        )

    @property
    def sources_dir(self) -> Path:
        return self.state_dir / "sources"

    @property
    def runs_dir(self) -> Path:
        return self.state_dir / "runs"

    @property
    def default_training_source(self) -> Path:
        return self.sources_dir / "training.csv"

    @property
    def default_scoring_source(self) -> Path:
        return self.sources_dir / "scoring.csv"

    @property
    def registered_model(self) -> str:
        return self.pipeline["registered_model"]

    @property
    def champion_alias(self) -> str:
        return self.pipeline["champion_alias"]

    @property
    def scores_table(self) -> str:
        return validated_identifier(self.pipeline["warehouse"]["table"])

    @property
    def scores_schema(self) -> str | None:
        schema = self.pipeline["warehouse"].get("schema")
        return validated_identifier(schema) if schema else None

    def overridden(self, **values: Any) -> Settings:
        """These settings with the given values replaced; None leaves a value as it is."""
        return replace(self, **{key: value for key, value in values.items() if value is not None})

    def run_dir(self, score_date: str, run_id: str) -> Path:
        """Folder for one pipeline run's files, partitioned by score date then run."""
        return self.runs_dir / f"score_date={score_date}" / f"run_id={safe_path_part(run_id)}"


def validated_identifier(name: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else refuse it."""
    if not isinstance(name, str) or not SQL_IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a valid SQL identifier (letters, digits, underscore)")
    return name


def safe_path_part(text: str) -> str:
    """Make an Airflow run id safe as a single folder name on any filesystem."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


@cache
def pipeline_config() -> dict[str, Any]:
    text = resources.files("churn").joinpath("pipeline.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, falling back to the embedded single-machine layout."""
    environ = os.environ if environ is None else environ
    state_dir = Path(environ.get("CHURN_HOME") or PROJECT_DIR / ".churn").expanduser().resolve()
    return Settings(
        state_dir=state_dir,
        warehouse_url=environ.get("CHURN_WAREHOUSE_URL") or f"sqlite:///{state_dir / 'warehouse.db'}",
        mlflow_tracking_uri=environ.get("MLFLOW_TRACKING_URI")
        or f"sqlite:///{state_dir / 'mlflow' / 'mlflow.db'}",
        mlflow_artifact_root=state_dir / "mlflow" / "artifacts",
        pipeline=pipeline_config(),
    )


def sqlalchemy_url_from_connection(
    conn_type: str,
    host: str | None,
    login: str | None = None,
    password: str | None = None,
    port: int | None = None,
    schema: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Turn the fields of an Airflow Connection into a SQLAlchemy URL.

    ``schema`` is the database name, as in Airflow's own Postgres connection form; a
    ``sqlalchemy_url`` key in the extras wins, for drivers Airflow has no form for. For
    PostgreSQL the libpq parameters among the extras (``sslmode``...) go into the URL's query.
    """
    from sqlalchemy.engine import URL

    if extra and extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    # A URI such as postgresql+psycopg://... arrives with the SQLAlchemy driver as its type.
    driver = conn_type if "+" in conn_type else SQLALCHEMY_DRIVERS.get(conn_type)
    if driver is None:
        raise ValueError(
            f"connection type {conn_type!r} is not supported; use one of "
            f"{sorted(SQLALCHEMY_DRIVERS)} or set extra.sqlalchemy_url"
        )
    if driver.startswith("sqlite"):
        database = host or schema
        if not database:
            raise ValueError("a sqlite connection needs the database file path as its host")
        return f"sqlite:///{database}"
    query: dict[str, str] = {}
    if driver.startswith("postgresql") and extra:
        query = {key: str(value) for key, value in extra.items() if key in LIBPQ_EXTRAS}
    url = URL.create(
        drivername=driver,
        username=login or None,
        password=password or None,
        host=host or None,
        port=port or None,
        database=schema or None,
        query=query,
    )
    return url.render_as_string(hide_password=False)


def tracking_uri_from_connection(
    host: str, port: int | None = None, schema: str | None = None, conn_type: str | None = None
) -> str:
    """Turn an Airflow HTTP Connection into an MLflow tracking URI.

    The scheme comes from the schema field (the Connection form) or, for a URI such as
    ``AIRFLOW_CONN_CHURN_MLFLOW=https://...``, from the connection type Airflow parsed it to.
    """
    if not host:
        raise ValueError("the MLflow connection needs a host")
    if "://" in host:
        return host.rstrip("/")
    scheme = next((s for s in (schema, conn_type) if s in {"http", "https"}), "http")
    return f"{scheme}://{host}{f':{port}' if port else ''}"


def redact_url(url: Any) -> str:
    """A database or server URL safe for logs, manifests and messages: no password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except ArgumentError:
        return redact_text(str(url))


def redact_text(text: str) -> str:
    """Text with any ``scheme://user:password@`` credentials in it masked."""
    return re.sub(r"(\w[\w+.-]*://[^:/@\s]+):[^@\s]*@", r"\1:***@", text)


def code_version() -> str:
    """The git commit of the code that runs, or the package version outside a checkout."""
    from churn import __version__

    if os.environ.get("CHURN_CODE_VERSION"):
        return os.environ["CHURN_CODE_VERSION"]
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(PROJECT_DIR), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"
