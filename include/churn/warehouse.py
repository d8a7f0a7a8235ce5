"""The warehouse table of churn scores: one row per customer and score date.

A date is written in two steps. Each scoring partition stages its rows in the run's
staging table, replacing only its own rows, so a retried or duplicated partition never
duplicates one. Publishing then swaps the date's rows for the staged ones in one short
transaction, so readers see the whole date or the previous one. On PostgreSQL the scores
table is partitioned by date and the staging table becomes the date's partition (a
catalogue change, however many rows); elsewhere the staged rows are copied over. Reads
tell the other phases what has been scored already, so reruns and backfills keep a
date's model; each row names the model that wrote it by what cannot be renumbered (its MLflow
run and training fingerprint), so a rerun can tell when a version number now names another model.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from churn.airflow_connections import ConnectionProblem, refused_login
from churn.contract import CUSTOMER_ID_LENGTH
from churn.errors import PermanentError
from churn.settings import DatabaseTimeouts, Settings, redact_url

INSERT_BATCH_ROWS = 10_000
# The staging table's column naming the scoring partition that wrote each row.
STAGED_BY = "scoring_partition"


class WarehouseError(RuntimeError):
    """The warehouse could not be read or refused the write; the date's earlier rows are unchanged."""


class PublishRefused(PermanentError, RuntimeError):
    """The staged rows must not become the date's scores; only scoring the date again can fix it."""


@dataclass(frozen=True)
class ScoringRecord:
    """What the warehouse holds of a model's scores: the version that scored a date, and the
    latest date; with what that version was when it scored the date (its MLflow run and
    training fingerprint), if the rows say (rows written before they did not)."""

    version_for_date: str | None
    latest_date: date | None
    model_run_id_for_date: str | None = None
    training_fingerprint_for_date: str | None = None


def warehouse_engine(
    url: str, timeouts: DatabaseTimeouts | None = None, *, conn_id: str | None = None
) -> sa.Engine:
    """An engine for the warehouse (or a ``sql://`` source's database) whose waits are bounded
    by ``timeouts`` (pipeline.yaml's ``database_timeouts``): on PostgreSQL each connection
    attempt, lock wait and statement; on SQLite the wait for the write lock; elsewhere the
    driver's own. A login PostgreSQL refuses raises a
    :class:`~churn.airflow_connections.ConnectionProblem` naming the Connection ``conn_id`` (None:
    the URL came from CHURN_WAREHOUSE_URL) and the field to fix.

    On SQLite, transactions begun with the execution option ``write_lock=True`` take the write
    lock at once (BEGIN IMMEDIATE), so writers wait for each other instead of failing half-way
    through; readers never take it."""
    timeouts = timeouts or DatabaseTimeouts()
    # hide_parameters: error messages must not carry customer rows into logs.
    if not url.startswith("sqlite"):
        # libpq's settings; another database (a SQLAlchemy URL in a Connection's extra) keeps its driver's.
        postgres = sa.engine.make_url(url).get_backend_name() == "postgresql"
        session = _postgres_session(url, timeouts) if postgres else {}
        engine = sa.create_engine(url, hide_parameters=True, connect_args=session)

        @sa.event.listens_for(engine, "handle_error")
        def _name_a_refused_login(context: sa.engine.ExceptionContext) -> None:
            if context.connection is None:  # connecting
                problem = refused_login(context.original_exception, engine.url, conn_id, "CHURN_WAREHOUSE_URL")
                if problem is not None:
                    raise problem from context.original_exception

        return engine
    engine = sa.create_engine(url, hide_parameters=True, connect_args={"timeout": timeouts.lock_seconds})

    @sa.event.listens_for(engine, "connect")
    def _let_sqlalchemy_begin(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: sa.Connection) -> None:
        immediate = connection.get_execution_options().get("write_lock", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def configured_warehouse_engine(settings: Settings) -> sa.Engine:
    """:func:`warehouse_engine` for the warehouse ``settings`` name, with their time-outs."""
    timeouts = settings.config.database_timeouts
    return warehouse_engine(settings.warehouse_url, timeouts, conn_id=settings.warehouse_conn_id)


def _postgres_session(url: str, timeouts: DatabaseTimeouts) -> dict[str, Any]:
    """libpq's arguments for a session that waits at most ``timeouts``. What the URL sets itself
    (a Connection's extras) wins: its connect_timeout is kept, and its ``-c`` options come after
    these, so PostgreSQL takes them."""
    query = sa.engine.make_url(url).query
    limits = f"-c lock_timeout={timeouts.lock_seconds}s -c statement_timeout={timeouts.statement_seconds}s"
    own = query.get("options")
    session: dict[str, Any] = {"options": f"{limits} {own}" if own else limits}
    if "connect_timeout" not in query:
        session["connect_timeout"] = timeouts.connect_seconds
    return session


def _score_columns() -> list[sa.Column]:
    return [
        sa.Column("score_date", sa.Date, primary_key=True),
        sa.Column("customer_id", sa.String(CUSTOMER_ID_LENGTH), primary_key=True),
        sa.Column("churn_probability", sa.Float(precision=53), nullable=False),
        sa.Column("risk_band", sa.String(16), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        # The model's identity, which a lost and rebuilt registry cannot give another model:
        # the MLflow run that logged it and the fingerprint of what it was made of. Empty only
        # in rows written before these columns existed (see add_missing_columns).
        sa.Column("model_run_id", sa.String(64)),
        sa.Column("training_fingerprint", sa.String(64)),
    ]


def _column_names(connection: sa.Connection, table: sa.Table) -> set[str]:
    """The columns the database's ``table`` has, whatever its definition here says."""
    return {column["name"] for column in sa.inspect(connection).get_columns(table.name, schema=table.schema)}


def add_missing_columns(connection: sa.Connection, table: sa.Table) -> list[str]:
    """Add to the existing ``table`` the columns its definition has and it lacks (a table
    created by an earlier release); returns their names. On PostgreSQL a partitioned table's
    partitions gain them with it. The columns added allow empty values: older rows have none."""
    present = _column_names(connection, table)
    missing = [column for column in table.columns if column.name not in present]
    for column in missing:
        kind = column.type.compile(dialect=connection.dialect)
        connection.exec_driver_sql(f"ALTER TABLE {_qualified(table)} ADD COLUMN {_quoted(column.name)} {kind}")
    return [column.name for column in missing]


def scores_table(metadata: sa.MetaData, name: str, schema: str | None, *, partitioned: bool = True) -> sa.Table:
    """The warehouse table of churn scores; one row per customer and score date.

    PostgreSQL creates it partitioned by date (unless not ``partitioned``), so publishing a
    date swaps one partition.
    """
    partition_by = {"postgresql_partition_by": "LIST (score_date)"} if partitioned else {}
    return sa.Table(name, metadata, *_score_columns(), schema=schema, **partition_by)


def staging_table(scores: sa.Table, score_date: date, stage_key: str) -> sa.Table:
    """The table where one scoring attempt stages ``score_date``'s rows: the scores table's
    columns, plus the partition that wrote each row; its name is derived from the date and
    ``stage_key`` (unique to the attempt), within PostgreSQL's 63 characters.

    The check on the date lets PostgreSQL attach the table as the date's partition without
    reading it.
    """
    digest = hashlib.sha256(f"{score_date}|{stage_key}".encode()).hexdigest()[:12]
    return sa.Table(
        f"{scores.name[:40]}_{score_date:%Y%m%d}_{digest}",
        sa.MetaData(),
        *_score_columns(),
        sa.Column(STAGED_BY, sa.Integer, nullable=False),
        sa.CheckConstraint(f"score_date = '{score_date.isoformat()}'"),
        schema=scores.schema,
    )


class _ProducerFailed(Exception):
    """The rows' producer (the model scoring the next batch) raised, not the warehouse."""


def _produced(batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
    """``batches``, with a failure to produce one told apart from a failure to write it."""
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as error:
            raise _ProducerFailed from error
        yield batch


def copy_rows(connection: sa.Connection, table: sa.Table, rows: pd.DataFrame) -> None:
    """Stream ``rows`` into a PostgreSQL table with COPY, inside the caller's transaction.

    Arrow writes the rows as CSV in native code, outside the interpreter's lock, so a batch
    goes to the server without a Python call per row and the next batch's prediction is not
    held up meanwhile.
    """
    import pyarrow as pa
    import pyarrow.csv as arrow_csv
    from psycopg import sql

    columns = [column.name for column in table.columns]
    target = sql.Identifier(*filter(None, (table.schema, table.name)))
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        target, sql.SQL(", ").join(sql.Identifier(name) for name in columns)
    )
    text = pa.BufferOutputStream()
    arrow_csv.write_csv(
        pa.Table.from_pandas(rows[columns], preserve_index=False),
        text,
        write_options=arrow_csv.WriteOptions(include_header=False),
    )
    with connection.connection.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        copy.write(text.getvalue().to_pybytes())


def _insert_rows(connection: sa.Connection, table: sa.Table, rows: pd.DataFrame) -> None:
    records = rows[[column.name for column in table.columns]].to_dict(orient="records")
    for start in range(0, len(records), INSERT_BATCH_ROWS):
        connection.execute(sa.insert(table), records[start : start + INSERT_BATCH_ROWS])


def replace_scores(
    engine: sa.Engine,
    table: sa.Table,
    score_date: date,
    rows: pd.DataFrame | Iterable[pd.DataFrame],
    *,
    seen: ScoringRecord | None = None,
) -> int:
    """Replace exactly ``score_date``'s rows with ``rows`` (one frame, or batches as they are
    scored), staged as a single partition and then published; returns how many rows were written."""
    staging = prepare_staging(engine, table, score_date, uuid.uuid4().hex)
    staged = stage_partition(engine, staging, score_date, 0, rows)
    model = None
    if seen is not None and staged:
        with engine.connect() as connection:
            model = tuple(
                connection.execute(sa.select(staging.c.model_name, staging.c.model_version).limit(1)).one()
            )
    return publish_staged(engine, table, staging, score_date, {0: staged}, seen=seen, model=model)


def prepare_staging(engine: sa.Engine, table: sa.Table, score_date: date, stage_key: str) -> sa.Table:
    """Create the scores table if it is missing, and an empty staging table for ``score_date``
    under ``stage_key``, which must be new to the date: on PostgreSQL a published staging
    table is the date's live partition."""
    staging = staging_table(table, score_date, stage_key)
    with _writing(engine, table, score_date, "preparing to stage") as connection:
        _lock(connection, table.fullname)
        if table.schema and not sa.inspect(connection).has_schema(table.schema):
            connection.execute(sa.schema.CreateSchema(table.schema))
        table.metadata.create_all(connection, tables=[table], checkfirst=True)
        add_missing_columns(connection, table)
        staging.create(connection)
    return staging


def stage_partition(
    engine: sa.Engine,
    staging: sa.Table,
    score_date: date,
    partition: int,
    rows: pd.DataFrame | Iterable[pd.DataFrame],
) -> int:
    """Stage ``partition``'s rows (one frame, or batches as they are scored), replacing what an
    earlier attempt at the same partition staged, in one transaction; returns the row count.

    Attempts at one partition take turns (PostgreSQL: an advisory lock on the partition;
    SQLite: the write lock), so a retried or duplicated partition ends with one copy of its
    rows. An error raised while producing a batch comes out unchanged.
    """
    batches = [rows] if isinstance(rows, pd.DataFrame) else rows
    try:
        with (
            closing(_produced(batches)) as produced,
            _writing(engine, staging, score_date, f"staging partition {partition}") as connection,
        ):
            _lock(connection, f"{staging.fullname}/{partition}")
            connection.execute(sa.delete(staging).where(staging.c[STAGED_BY] == partition))
            load = _loader(engine)
            written = 0
            for batch in produced:
                load(connection, staging, batch.assign(score_date=score_date, **{STAGED_BY: partition}))
                written += len(batch)
    except _ProducerFailed as failed:
        raise failed.__cause__ from None
    return written


def publish_staged(
    engine: sa.Engine,
    table: sa.Table,
    staging: sa.Table,
    score_date: date,
    expected_rows: dict[int, int],
    *,
    seen: ScoringRecord | None = None,
    model: tuple[str, str] | None = None,
    run_id: str | None = None,
) -> int:
    """Make the staged rows ``score_date``'s scores in one short transaction; returns how many.

    Refused (:class:`PublishRefused`), with the date's rows unchanged, unless every partition
    staged exactly the rows it reported (``expected_rows``: partition to row count). Writers
    of the table take turns, so two runs of one date end with one complete set. With ``seen``
    (the record the model was chosen from) and ``model`` (its name and version), publishing is
    refused if another run has scored the date with a version other than that record's or
    ``model``'s since. Publishing again what is already published (a retry after the commit,
    given the rows' ``run_id``) changes nothing and succeeds.
    """
    total = sum(expected_rows.values())
    with _writing(engine, table, score_date, "publishing") as connection:
        _lock(connection, table.fullname)
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            # Readers queue behind the partition swap: the session's lock_timeout bounds the wait
            # for theirs to end, then it fails and is retried. The partition bound is compared as ISO text.
            connection.exec_driver_sql("SET LOCAL datestyle = 'ISO, YMD'")
        partitioned = _is_partitioned(connection, table)
        if _published_already(connection, table, staging, score_date, total, run_id, partitioned=partitioned):
            return total
        if postgres:  # no late attempt at a partition may add rows once they are counted
            connection.exec_driver_sql(f"LOCK TABLE {_qualified(staging)} IN ACCESS EXCLUSIVE MODE")
        staged = dict(
            connection.execute(
                sa.select(staging.c[STAGED_BY], sa.func.count()).group_by(staging.c[STAGED_BY])
            ).all()
        )
        if staged != {partition: rows for partition, rows in expected_rows.items() if rows}:
            raise PublishRefused(
                f"the staged rows do not match what the partitions reported (staged per partition: {staged}; "
                f"reported: {expected_rows}); nothing was published: score the date again"
            )
        if seen is not None and model is not None:
            model_name, model_version = model
            now = _version_for_date(connection, table, score_date, model_name)
            if now not in {seen.version_for_date, model_version}:
                raise PublishRefused(
                    f"another run scored {score_date} with version {now} while this one was scoring; nothing was "
                    "published: score the date again (clear the score group) to score it with that version"
                )
        if partitioned:
            _swap_partition(connection, table, staging, score_date)
        else:
            connection.execute(sa.delete(table).where(table.c.score_date == score_date))
            names = [column.name for column in table.columns]
            connection.execute(sa.insert(table).from_select(names, sa.select(*(staging.c[n] for n in names))))
            staging.drop(connection)
    return total


def _published_already(
    connection: sa.Connection,
    table: sa.Table,
    staging: sa.Table,
    score_date: date,
    rows: int,
    run_id: str | None,
    *,
    partitioned: bool,
) -> bool:
    """Whether ``staging`` was published before: attached as the date's partition (a
    ``partitioned`` table), or copied over (and dropped) with the date now holding exactly its
    ``rows`` from ``run_id``."""
    if partitioned:
        return staging.name in _partitions(connection, table).values()
    if run_id is None or sa.inspect(connection).has_table(staging.name, schema=staging.schema):
        return False
    published = connection.execute(
        sa.select(sa.func.count()).where(table.c.score_date == score_date, table.c.run_id == run_id)
    ).scalar()
    everything = connection.execute(sa.select(sa.func.count()).where(table.c.score_date == score_date)).scalar()
    return published == everything == rows


@contextmanager
def _writing(
    engine: sa.Engine, table: sa.Table, score_date: date, step: str, rows: str = "scores"
) -> Iterator[sa.Connection]:
    """A write transaction (on SQLite, holding the write lock) whose failures are WarehouseErrors."""
    try:
        with engine.execution_options(write_lock=True).begin() as connection:
            yield connection
    except (_ProducerFailed, PublishRefused, ConnectionProblem):
        raise
    except Exception as error:  # the driver's own errors (COPY) are not SQLAlchemy's
        raise WarehouseError(
            f"{step} the {rows} for {score_date} in {table.fullname} at {redact_url(engine.url)} failed; unless "
            f"the failure came at commit, the date's earlier rows are unchanged{_waited_too_long(error)}: {error}"
        ) from error


# How PostgreSQL says that a session's time-out ended a statement, and what to say of it.
_ENDED_WAITS = {
    "due to lock timeout": "another session held a lock it needs for longer than database_timeouts.lock_seconds",
    "due to statement timeout": "a statement ran for longer than database_timeouts.statement_seconds",
}


def _waited_too_long(error: BaseException) -> str:
    """Why PostgreSQL ended ``error``'s statement, when a time-out of pipeline.yaml did; else ''."""
    reason = next((reason for words, reason in _ENDED_WAITS.items() if words in str(error)), None)
    return f" ({reason} in pipeline.yaml allows; a retry tries again)" if reason else ""


def _lock(connection: sa.Connection, key: str) -> None:
    """On PostgreSQL, wait for the transaction-scoped advisory lock named ``key``; SQLite's
    write transactions already take turns."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(key))))


def _loader(engine: sa.Engine):
    if engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg":
        return copy_rows
    return _insert_rows


def _is_partitioned(connection: sa.Connection, table: sa.Table) -> bool:
    if connection.dialect.name != "postgresql":
        return False
    kind = connection.execute(
        sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"), {"name": _qualified(table)}
    ).scalar()
    return kind == "p"


def _qualified(table: sa.Table) -> str:
    return _quoted(table.schema, table.name)


def _quoted(*parts: str | None) -> str:
    return ".".join(f'"{part}"' for part in parts if part)


def _partitions(connection: sa.Connection, table: sa.Table) -> dict[str, str]:
    """The scores table's partitions: each one's bound (``FOR VALUES IN ('<date>')``) and name."""
    return dict(
        connection.execute(
            sa.text(
                "SELECT pg_get_expr(c.relpartbound, c.oid), c.relname FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(:parent)"
            ),
            {"parent": _qualified(table)},
        ).all()
    )


def _swap_partition(connection: sa.Connection, table: sa.Table, staging: sa.Table, score_date: date) -> None:
    """Detach and drop the date's old partition and attach the staging table in its place.

    Both are catalogue changes: the staging table's check on the date spares PostgreSQL a scan,
    and its primary key becomes the partition's index.
    """
    connection.exec_driver_sql(f"ALTER TABLE {_qualified(staging)} DROP COLUMN {STAGED_BY}")
    _drop_date_partition(connection, table, score_date)
    connection.exec_driver_sql(
        f"ALTER TABLE {_qualified(table)} ATTACH PARTITION {_qualified(staging)} {_date_bound(score_date)}"
    )


def _date_bound(score_date: date) -> str:
    """A date partition's bound, as PostgreSQL renders it in the session's ISO date style."""
    return f"FOR VALUES IN ('{score_date.isoformat()}')"


def _drop_date_partition(connection: sa.Connection, table: sa.Table, score_date: date) -> bool:
    """Detach and drop ``score_date``'s partition of the scores table; whether it had one."""
    partition = _partitions(connection, table).get(_date_bound(score_date))
    if partition is None:
        return False
    connection.exec_driver_sql(
        f"ALTER TABLE {_qualified(table)} DETACH PARTITION {_quoted(table.schema, partition)}"
    )
    connection.exec_driver_sql(f"DROP TABLE {_quoted(table.schema, partition)}")
    return True


def _version_for_date(connection: sa.Connection, table: sa.Table, score_date: date, model_name: str) -> str | None:
    return connection.execute(
        sa.select(table.c.model_version)
        .where(table.c.model_name == model_name, table.c.score_date == score_date)
        .order_by(table.c.scored_at.desc())
        .limit(1)
    ).scalar()


def monitoring_table(metadata: sa.MetaData, name: str, schema: str | None) -> sa.Table:
    """The warehouse table of monitoring metrics: one row per metric (and feature) per score date."""
    return sa.Table(
        name,
        metadata,
        sa.Column("score_date", sa.Date, nullable=False, index=True),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("feature", sa.String(128)),  # None: a metric of the whole date
        sa.Column("value", sa.Float(precision=53)),  # None: not computable (no rows to measure)
        sa.Column("reference_value", sa.Float(precision=53)),
        sa.Column("threshold", sa.Float(precision=53)),
        sa.Column("drifted", sa.Boolean),
        sa.Column("detail", sa.String(512)),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )


def replace_monitoring(engine: sa.Engine, table: sa.Table, score_date: date, rows: pd.DataFrame) -> int:
    """Replace exactly ``score_date``'s monitoring rows with ``rows`` in one transaction (the table
    is created if missing); a failure leaves the date's earlier rows as they were."""
    with _writing(engine, table, score_date, "writing", rows="monitoring rows") as connection:
        _lock(connection, table.fullname)
        if table.schema and not sa.inspect(connection).has_schema(table.schema):
            connection.execute(sa.schema.CreateSchema(table.schema))
        table.metadata.create_all(connection, tables=[table], checkfirst=True)
        connection.execute(sa.delete(table).where(table.c.score_date == score_date))
        _insert_rows(connection, table, rows.assign(score_date=score_date))
    return len(rows)


def forget_date(engine: sa.Engine, scores: sa.Table, monitoring: sa.Table, score_date: date) -> dict[str, int]:
    """Remove every row of ``score_date`` from the scores and the monitoring table in one
    transaction (on PostgreSQL, a partitioned scores table's partition of the date is detached
    and dropped, as publishing swaps it); returns the rows removed per table. A table that does
    not exist holds none. Publishers of the date wait for it, and it for them."""
    removed = {}
    with _writing(engine, scores, score_date, "forgetting", rows="scores and monitoring rows") as connection:
        for table in (scores, monitoring):
            _lock(connection, table.fullname)
            if not sa.inspect(connection).has_table(table.name, schema=table.schema):
                removed[table.fullname] = 0
                continue
            for_date = table.c.score_date == score_date
            removed[table.fullname] = connection.execute(sa.select(sa.func.count()).where(for_date)).scalar()
            if table is scores and _is_partitioned(connection, table):
                connection.exec_driver_sql("SET LOCAL datestyle = 'ISO, YMD'")  # the bound is compared as ISO text
                _drop_date_partition(connection, table, score_date)
            else:
                connection.execute(sa.delete(table).where(for_date))
    return removed


@contextmanager
def open_scores_table(settings: Settings) -> Iterator[tuple[sa.Engine, sa.Table]]:
    """An engine for the configured warehouse and its scores table; the engine is closed after."""
    engine = configured_warehouse_engine(settings)
    try:
        warehouse = settings.config.warehouse
        yield engine, scores_table(sa.MetaData(), warehouse.table, warehouse.schema_name)
    finally:
        engine.dispose()


def read_date_scores(
    engine: sa.Engine, table: sa.Table, score_date: date, chunk_rows: int, columns: Iterable[str]
) -> Iterator[pd.DataFrame]:
    """``columns`` of ``score_date``'s scores, ``chunk_rows`` rows at a time: memory holds one
    chunk, not the date."""
    names = list(columns)
    query = sa.select(*(table.c[name] for name in names)).where(table.c.score_date == score_date)
    try:
        with engine.connect() as connection:
            result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
            for rows in result.partitions():
                yield pd.DataFrame(rows, columns=names)
    except sa.exc.SQLAlchemyError as error:
        raise WarehouseError(
            f"reading the scores for {score_date} from {table.fullname} at {redact_url(engine.url)} failed: "
            f"{error}"
        ) from error


def scored_dates(engine: sa.Engine, table: sa.Table, since: date, before: date) -> list[date]:
    """The dates from ``since`` up to (not including) ``before`` that have scores, newest first."""
    if not sa.inspect(engine).has_table(table.name, schema=table.schema):
        return []
    query = (
        sa.select(table.c.score_date)
        .where(table.c.score_date >= since, table.c.score_date < before)
        .group_by(table.c.score_date)
        .order_by(table.c.score_date.desc())
    )
    with engine.connect() as connection:
        return list(connection.execute(query).scalars())


def _identity_for_date(
    connection: sa.Connection, table: sa.Table, score_date: date, model_name: str
) -> tuple[str | None, str | None]:
    """The MLflow run and training fingerprint of the model that scored ``score_date``, as its
    rows recorded them; (None, None) when they did not (rows or a table older than the columns)."""
    if not {"model_run_id", "training_fingerprint"} <= _column_names(connection, table):
        return None, None
    found = connection.execute(
        sa.select(table.c.model_run_id, table.c.training_fingerprint)
        .where(table.c.model_name == model_name, table.c.score_date == score_date)
        .order_by(table.c.scored_at.desc())
        .limit(1)
    ).one_or_none()
    return (found[0], found[1]) if found is not None else (None, None)


def sqlite_file_missing(url: str | sa.URL) -> bool:
    """Whether ``url`` is a SQLite database whose file does not exist yet: it holds nothing, and
    connecting would create it, or fail where its folder does not exist yet."""
    parsed = sa.make_url(url)
    return (
        parsed.get_backend_name() == "sqlite"
        and bool(parsed.database)
        and parsed.database != ":memory:"
        and not Path(parsed.database).exists()
    )


@contextmanager
def _reading(engine: sa.Engine, table: sa.Table) -> Iterator[sa.Connection | None]:
    """A connection to read ``table``, or None when the table does not exist (nor is created);
    a failure is a :class:`WarehouseError` saying that nothing was written."""
    try:
        if sqlite_file_missing(engine.url) or not sa.inspect(engine).has_table(table.name, schema=table.schema):
            yield None
            return
        with engine.connect() as connection:
            yield connection
    except sa.exc.SQLAlchemyError as error:
        raise WarehouseError(
            f"reading {table.fullname} at {redact_url(engine.url)} failed before anything was written; the "
            f"date's earlier rows are unchanged: {error}"
        ) from error


def database_date(value: date | str | None) -> date | None:
    """A date the database returned: SQLite hands back max() of a date column as text."""
    return date.fromisoformat(value) if isinstance(value, str) else value


def rows_to_compare(engine: sa.Engine, table: sa.Table, score_date: date) -> tuple[date, int] | None:
    """The rows the scores table holds for ``score_date``, else for the latest date scored before
    it, with that date; None when there are none (the first date ever scored). Counted by the
    database per date (on PostgreSQL, in the date's partition), never read."""
    with _reading(engine, table) as connection:
        if connection is None:
            return None
        for_date = connection.execute(sa.select(sa.func.count()).where(table.c.score_date == score_date)).scalar()
        if for_date:
            return score_date, for_date
        previous = database_date(
            connection.execute(
                sa.select(sa.func.max(table.c.score_date)).where(table.c.score_date < score_date)
            ).scalar()
        )
        if previous is None:
            return None
        return previous, connection.execute(
            sa.select(sa.func.count()).where(table.c.score_date == previous)
        ).scalar()


def scoring_record(engine: sa.Engine, table: sa.Table, score_date: date, model_name: str) -> ScoringRecord:
    """Which version of ``model_name`` scored ``score_date`` (and what it was then), and the
    latest date it scored."""
    with _reading(engine, table) as connection:
        if connection is None:
            return ScoringRecord(None, None)
        version = _version_for_date(connection, table, score_date, model_name)
        run_id, fingerprint = _identity_for_date(connection, table, score_date, model_name)
        latest = connection.execute(
            sa.select(sa.func.max(table.c.score_date)).where(table.c.model_name == model_name)
        ).scalar()
    return ScoringRecord(version, database_date(latest), run_id, fingerprint)


@dataclass(frozen=True)
class WarehouseState:
    """What the scores table holds for one score date."""

    rows: int
    model_versions: list[str]
    mean_probability: float | None
    # Rows per risk band, from the lowest band to the highest.
    risk_bands: dict[str, int]

    def describe(self, table: str, score_date: date) -> str:
        if not self.rows:
            return f"{table} holds no rows for {score_date}"
        bands = ", ".join(f"{band} {count:,}" for band, count in self.risk_bands.items())
        return (
            f"{table} holds {self.rows:,} rows for {score_date}: {bands} (model version "
            f"{', '.join(self.model_versions)}, mean churn probability {self.mean_probability:.3f})"
        )


def warehouse_state(settings: Settings, score_date: date) -> WarehouseState:
    """What the scores table holds for ``score_date``: nothing when the table is absent."""
    with open_scores_table(settings) as (engine, table), engine.connect() as connection:
        if not sa.inspect(connection).has_table(table.name, schema=table.schema):
            return WarehouseState(0, [], None, {})
        for_date = table.c.score_date == score_date
        rows, mean = connection.execute(
            sa.select(sa.func.count(), sa.func.avg(table.c.churn_probability)).where(for_date)
        ).one()
        versions = connection.scalars(sa.select(table.c.model_version).where(for_date).distinct()).all()
        counted = dict(
            connection.execute(
                sa.select(table.c.risk_band, sa.func.count()).where(for_date).group_by(table.c.risk_band)
            ).all()
        )
    bands = settings.config.in_band_order(counted)
    return WarehouseState(rows, sorted(versions), float(mean) if mean is not None else None, bands)
