"""Deployment: score every active customer and replace the date's rows.

The model is the one of record for the date: the version this run promoted, else the
version that scored the date before (so a rerun or backfill reproduces it), else the
current champion. The write is one transaction: the date's earlier scores are deleted and
the new ones inserted together, so readers see the old set or the new set, never a mix,
and a rerun of a date never duplicates a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from churn.contract import Contract, load_contract
from churn.manifest import recording_failure, write_manifest
from churn.settings import Settings, redact_text, redact_url
from churn.tracking import ModelUnavailableError, champion_version, load_registered_model, use_mlflow
from churn.train import model_inputs

INSERT_BATCH_ROWS = 10_000
SQLITE_WRITE_WAIT_SECONDS = 60


class ScoringError(RuntimeError):
    """Scoring cannot go ahead safely; nothing was written. Retrying will not help."""


class WarehouseError(RuntimeError):
    """The warehouse could not be read or refused the write; the date's earlier rows are unchanged."""


@dataclass(frozen=True)
class ModelOfRecord:
    """The registered model version that scores a date, and why it is that one."""

    name: str
    version: str
    reason: str


def risk_bands(probabilities: pd.Series, upper_bounds: dict[str, float]) -> pd.Series:
    """Name each probability's band; ``upper_bounds`` maps band name to its inclusive upper edge."""
    names = list(upper_bounds)
    edges = [upper_bounds[name] for name in names]
    if edges != sorted(edges) or edges[-1] < 1.0:
        raise ValueError(f"risk band bounds must increase and end at 1.0 or above: {upper_bounds}")
    positions = np.searchsorted(edges, probabilities.to_numpy(dtype=float), side="left")
    return pd.Series(np.asarray(names, dtype=object)[positions], index=probabilities.index, dtype="string")


def score_frame(model: Any, features: pd.DataFrame, contract: Contract, bands: dict[str, float]) -> pd.DataFrame:
    """Customer id, churn probability and risk band for every row of the feature table."""
    probabilities = pd.Series(model.predict_proba(model_inputs(features, contract))[:, 1], index=features.index)
    if probabilities.isna().any() or not probabilities.between(0.0, 1.0).all():
        raise ScoringError("the model returned probabilities outside [0, 1]; refusing to write them")
    return pd.DataFrame(
        {
            "customer_id": features[contract.id_column].astype("string"),
            "churn_probability": probabilities.astype("float64"),
            "risk_band": risk_bands(probabilities, bands),
        }
    )


def warehouse_engine(url: str) -> sa.Engine:
    """An engine for the warehouse. On SQLite, transactions begun with the execution option
    ``write_lock=True`` take the write lock at once (BEGIN IMMEDIATE), so writers wait for
    each other instead of failing half-way through; readers never take it."""
    # hide_parameters: error messages must not carry customer rows into logs.
    if not url.startswith("sqlite"):
        return sa.create_engine(url, hide_parameters=True)
    engine = sa.create_engine(url, hide_parameters=True, connect_args={"timeout": SQLITE_WRITE_WAIT_SECONDS})

    @sa.event.listens_for(engine, "connect")
    def _let_sqlalchemy_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get("write_lock", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def scores_table(metadata: sa.MetaData, name: str, schema: str | None) -> sa.Table:
    """The warehouse table of churn scores; one row per customer and score date."""
    return sa.Table(
        name,
        metadata,
        sa.Column("score_date", sa.Date, primary_key=True),
        sa.Column("customer_id", sa.String(64), primary_key=True),
        sa.Column("churn_probability", sa.Float(precision=53), nullable=False),
        sa.Column("risk_band", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )


def _copy_rows(connection: sa.Connection, table: sa.Table, records: list[dict[str, Any]]) -> None:
    """Stream rows into PostgreSQL with COPY, inside the caller's transaction."""
    from psycopg import sql

    columns = [column.name for column in table.columns]
    target = sql.Identifier(table.schema, table.name) if table.schema else sql.Identifier(table.name)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        target, sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    )
    with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for record in records:
            copy.write_row(tuple(record[name] for name in columns))


def _insert_rows(connection: sa.Connection, table: sa.Table, records: list[dict[str, Any]]) -> None:
    for start in range(0, len(records), INSERT_BATCH_ROWS):
        connection.execute(sa.insert(table), records[start : start + INSERT_BATCH_ROWS])


def replace_scores(engine: sa.Engine, table: sa.Table, score_date: date, rows: pd.DataFrame) -> int:
    """Replace exactly ``score_date``'s rows with ``rows`` in one transaction.

    Readers see the date's old rows until the commit and the new ones after it. On
    PostgreSQL, writers of the table take turns (a transaction-scoped advisory lock), so
    two runs of one date end with one complete set rather than a key conflict, and the
    rows go in through COPY.
    """
    records = rows.assign(score_date=score_date).to_dict(orient="records")
    try:
        _replace_in_transaction(engine, table, score_date, records)
    except Exception as error:  # the driver's own errors (COPY) are not SQLAlchemy's
        raise WarehouseError(
            f"writing {len(records)} scores for {score_date} to {table.fullname} at "
            f"{redact_url(engine.url)} failed; unless the failure came at commit, the date's earlier rows are "
            f"unchanged: {error}"
        ) from error
    return len(records)


def _replace_in_transaction(
    engine: sa.Engine, table: sa.Table, score_date: date, records: list[dict[str, Any]]
) -> None:
    postgres = engine.dialect.name == "postgresql"
    with engine.execution_options(write_lock=True).begin() as connection:
        if postgres:
            connection.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(table.fullname))))
        if table.schema and not sa.inspect(connection).has_schema(table.schema):
            connection.execute(sa.schema.CreateSchema(table.schema))
        table.metadata.create_all(connection, tables=[table], checkfirst=True)
        connection.execute(sa.delete(table).where(table.c.score_date == score_date))
        if postgres and engine.dialect.driver == "psycopg":
            _copy_rows(connection, table, records)
        else:
            _insert_rows(connection, table, records)


def recorded_version(engine: sa.Engine, table: sa.Table, score_date: date, model_name: str) -> str | None:
    """The version of ``model_name`` that scored ``score_date`` before, if the date has rows."""
    try:
        if not sa.inspect(engine).has_table(table.name, schema=table.schema):
            return None
        with engine.connect() as connection:
            return connection.execute(
                sa.select(table.c.model_version)
                .where(table.c.score_date == score_date, table.c.model_name == model_name)
                .order_by(table.c.scored_at.desc())
                .limit(1)
            ).scalar()
    except sa.exc.SQLAlchemyError as error:
        raise WarehouseError(
            f"reading {table.fullname} at {redact_url(engine.url)} failed before anything was written; the "
            f"date's earlier rows are unchanged: {error}"
        ) from error


def choose_model(
    settings: Settings, package: dict[str, Any], recorded: str | None, champion: str | None, score_date: date
) -> ModelOfRecord:
    """The version that scores the date: promoted by this run, else the date's earlier one, else the champion.

    A run for a past date never promotes (see evaluate), so a rerun or backfill scores with
    the version that scored the date before and reproduces its rows.
    """
    name, alias = settings.registered_model, settings.champion_alias
    if package["promoted"]:
        return ModelOfRecord(name, package["model_version"], f"this run promoted it to {alias!r}")
    if recorded is not None:
        return ModelOfRecord(
            name, recorded, f"it scored {score_date} before, and a rerun or backfill reproduces the date's scores"
        )
    if champion is None:
        raise ScoringError(
            f"no model carries the alias {alias!r} in {name!r}: no challenger has passed evaluation yet, so "
            "there is nothing safe to score with"
        )
    return ModelOfRecord(name, champion, f"it is the current {alias!r}")


def load_scoring_model(chosen: ModelOfRecord) -> Any:
    """Load the chosen version from the configured registry; refuse anything but a probabilistic classifier."""
    model = load_registered_model(chosen.name, chosen.version)
    if not hasattr(model, "predict_proba"):
        raise ScoringError(
            f"{chosen.name!r} version {chosen.version} is not a probabilistic classifier; refusing to score "
            "with it"
        )
    return model


def run_score(run: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Score the run's customers with the date's model of record and replace the date's rows."""
    score_date = date.fromisoformat(run["score_date"])
    with recording_failure(Path(run["run_dir"]), "score"):
        contract = load_contract(run["contract"])
        engine = warehouse_engine(settings.warehouse_url)
        table = scores_table(sa.MetaData(), settings.scores_table, settings.scores_schema)
        try:
            recorded = recorded_version(engine, table, score_date, settings.registered_model)
            try:
                use_mlflow(settings)
                champion = champion_version(settings)
            except Exception as error:  # MLflow raises MlflowException or requests' errors here
                raise ModelUnavailableError(
                    f"the MLflow registry at {redact_url(settings.mlflow_tracking_uri)} cannot be reached; "
                    f"nothing was scored: {redact_text(str(error))}"
                ) from error
            chosen = choose_model(
                settings, run["package"], recorded, str(champion.version) if champion else None, score_date
            )
            scored = score_frame(
                load_scoring_model(chosen),
                pd.read_parquet(run["feature"]["scoring"]["path"]),
                contract,
                settings.pipeline["risk_bands"],
            ).assign(
                model_name=chosen.name,
                model_version=chosen.version,
                run_id=run["airflow_run_id"],
                scored_at=datetime.now(UTC),
            )
            written = replace_scores(engine, table, score_date, scored)
        finally:
            engine.dispose()
    result = {
        "rows_written": written,
        "table": table.fullname,
        "warehouse": redact_url(engine.url),
        "score_date": score_date.isoformat(),
        "model_version": chosen.version,
        "model_chosen_because": chosen.reason,
        "risk_band_counts": scored["risk_band"].value_counts().sort_index().to_dict(),
    }
    return {**run, "score": write_manifest(Path(run["run_dir"]), "score", result)}
