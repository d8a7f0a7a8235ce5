"""The shrink guard: a scoring snapshot much smaller than the warehouse's scores (of the date a
rerun would replace, or of the latest date scored before) is refused at validate, with both
counts and the override; allow_shrink lets it through and the manifest records what it allowed.

Real snapshots as CSV files, validated by the real phase, against a real warehouse (SQLite, and
PostgreSQL where CHURN_TEST_POSTGRES_URL names one) that validate reads through its settings.
"""

from __future__ import annotations

import logging
import uuid
from datetime import date

import pytest
import sqlalchemy as sa

from churn.errors import PermanentError
from churn.generate import make_snapshots
from churn.manifest import read_manifests
from churn.validate import SnapshotShrank, run_validate
from churn.warehouse import replace_scores, scores_table, warehouse_engine
from tests.conftest import SCORE_DATE, ingest_for, run_parameters, score_rows, write_csv

SCORED_ROWS = 500


@pytest.fixture(scope="module")
def population():
    return make_snapshots(600, SCORED_ROWS, seed=13)


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_settings(request, settings):
    """The run's settings with their warehouse in each supported database, under a table name
    no other test uses."""
    table = f"churn_scores_{uuid.uuid4().hex[:12]}"
    url = settings.warehouse_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings.state_dir.mkdir(parents=True, exist_ok=True)  # where SQLite's warehouse file goes
    warehouse = settings.config.warehouse.model_copy(update={"table": table})
    yield settings.overridden(
        warehouse_url=url, config=settings.config.model_copy(update={"warehouse": warehouse})
    )
    engine = warehouse_engine(url)
    scores_table(sa.MetaData(), table, None).drop(engine, checkfirst=True)
    engine.dispose()


def scored(settings, score_date: date, rows: int) -> None:
    """The warehouse holds ``rows`` scores for ``score_date``, as a run's publish leaves them."""
    engine = warehouse_engine(settings.warehouse_url)
    table = scores_table(sa.MetaData(), settings.config.warehouse.table, None)
    replace_scores(engine, table, score_date, score_rows([f"customer-{i}" for i in range(rows)]))
    engine.dispose()


def stored(settings):
    engine = warehouse_engine(settings.warehouse_url)
    table = scores_table(sa.MetaData(), settings.config.warehouse.table, None)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(table.c.score_date, sa.func.count())
            .group_by(table.c.score_date)
            .order_by(table.c.score_date)
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def validate_run(settings, population, scoring_rows: int, **params):
    """ingest and validate a run for SCORE_DATE on the population's training snapshot and the
    first ``scoring_rows`` customers of its scoring snapshot, written as CSV files."""
    sources = settings.state_dir / "sources"
    training = write_csv(population.training, sources / "training.csv")
    scoring = write_csv(population.scoring.head(scoring_rows), sources / "scoring.csv")
    landed = ingest_for(settings, run_parameters(training, scoring) | params)
    return landed.run.run_dir, lambda: run_validate(landed, settings)


def test_a_rerun_with_a_one_row_snapshot_is_refused_with_both_counts_and_the_warehouse_unchanged(
    warehouse_settings, population
):
    scored(warehouse_settings, SCORE_DATE, SCORED_ROWS)
    before = stored(warehouse_settings)
    run_dir, validate = validate_run(warehouse_settings, population, 1)
    with pytest.raises(SnapshotShrank) as refused:
        validate()
    message = str(refused.value)
    assert isinstance(refused.value, PermanentError)  # Airflow fails the task at once, no retries
    assert "has 1 row, 99.8% fewer than the 500 rows" in message
    assert f"holds for {SCORE_DATE} (the scores this run would replace)" in message
    assert "more than 20% is refused (shrink_guard.max_drop_fraction in pipeline.yaml)" in message
    assert message.endswith("trigger the run again with the run parameter allow_shrink set to true")
    assert stored(warehouse_settings) == before == [(SCORE_DATE, SCORED_ROWS)]
    manifests = read_manifests(run_dir)
    assert "validate" not in manifests and manifests["failed"].error_type == "SnapshotShrank"


def test_allow_shrink_lets_it_through_and_the_manifest_records_the_counts(warehouse_settings, population, caplog):
    scored(warehouse_settings, SCORE_DATE, SCORED_ROWS)
    run_dir, validate = validate_run(warehouse_settings, population, 1, allow_shrink=True)
    with caplog.at_level(logging.WARNING, logger="churn"):
        validated = validate()
    allowed = read_manifests(run_dir)["validate"].shrink_allowed
    assert allowed == validated.shrink_allowed
    assert (allowed.scoring_rows, allowed.compared_date, allowed.compared_rows) == (1, SCORE_DATE, SCORED_ROWS)
    assert validated.run.allow_shrink
    assert "a scoring snapshot of 1 row, 99.8% fewer than the 500 scores of 2026-11-29" in caplog.text
    assert "allowed by the run parameter allow_shrink" in caplog.text


def test_a_drop_of_15_percent_passes(warehouse_settings, population):
    scored(warehouse_settings, SCORE_DATE, SCORED_ROWS)
    _, validate = validate_run(warehouse_settings, population, 425)
    validated = validate()
    assert validated.scoring.rows == 425 and validated.shrink_allowed is None


def test_a_new_date_is_compared_with_the_latest_date_scored_before_it(warehouse_settings, population):
    scored(warehouse_settings, date(2026, 11, 20), 40)
    scored(warehouse_settings, date(2026, 11, 28), SCORED_ROWS)
    scored(warehouse_settings, date(2026, 11, 30), 40)  # after the run's date: not compared
    _, validate = validate_run(warehouse_settings, population, 300)
    with pytest.raises(SnapshotShrank) as refused:
        validate()
    assert "has 300 rows, 40.0% fewer than the 500 rows" in str(refused.value)
    assert "holds for 2026-11-28 (the latest date scored before 2026-11-29)" in str(refused.value)


def test_the_first_date_ever_scored_has_nothing_to_compare_with(warehouse_settings, population):
    _, validate = validate_run(warehouse_settings, population, 1)
    assert validate().shrink_allowed is None
    scored(warehouse_settings, date(2026, 11, 30), SCORED_ROWS)  # only later dates scored: still the first
    assert validate().shrink_allowed is None


def test_a_sqlite_warehouse_not_created_yet_has_nothing_to_compare_with_and_stays_absent(
    settings, population, tmp_path
):
    absent = tmp_path / "not_yet" / "warehouse.db"
    settings = settings.overridden(warehouse_url=f"sqlite:///{absent}")
    _, validate = validate_run(settings, population, 1)
    assert validate().shrink_allowed is None
    assert not absent.parent.exists()
