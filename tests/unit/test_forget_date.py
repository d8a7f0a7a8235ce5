"""make forget-date: a mistaken date's scores and monitoring rows leave the warehouse (SQLite, and
PostgreSQL where CHURN_TEST_POSTGRES_URL names one) in one transaction, every other date's stay,
and the champion's record of a promotion for it goes, so promotion is no longer frozen by it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from churn.errors import PhaseSkipped
from churn.evaluate import skip_unless_promotable
from churn.tracking import FORGOTTEN_PROMOTION_TAG, PROMOTED_FOR_TAG, use_mlflow
from churn.warehouse import monitoring_table, replace_monitoring, replace_scores, scores_table, warehouse_engine
from scripts.forget_date import forget
from tests.conftest import run_context, score_rows

MISTAKE = date(2999, 12, 31)
REAL_DATES = {date(2026, 11, 28): 3, date(2026, 11, 29): 4}


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_settings(request, settings):
    """The settings with their scores and monitoring tables, under names no other test uses, in
    each supported database; the MLflow registry is the test's own."""
    url = settings.warehouse_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    settings.state_dir.mkdir(parents=True, exist_ok=True)  # where SQLite's warehouse file goes
    suffix = uuid.uuid4().hex[:12]
    config = settings.config.model_copy(
        update={
            "warehouse": settings.config.warehouse.model_copy(update={"table": f"churn_scores_{suffix}"}),
            "monitoring": settings.config.monitoring.model_copy(update={"table": f"churn_monitoring_{suffix}"}),
        }
    )
    yield settings.overridden(warehouse_url=url, config=config)
    engine = warehouse_engine(url)
    for table in tables(config):
        table.drop(engine, checkfirst=True)
    engine.dispose()


def tables(config) -> tuple[sa.Table, sa.Table]:
    return (
        scores_table(sa.MetaData(), config.warehouse.table, None),
        monitoring_table(sa.MetaData(), config.monitoring.table, None),
    )


def monitoring_rows(count: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "run_id": "run-1",
            "metric": "feature_psi",
            "feature": [f"feature_{i}" for i in range(count)],
            "value": 0.01,
            "reference_value": None,
            "threshold": 0.25,
            "drifted": False,
            "detail": None,
            "model_version": "2",
            "computed_at": datetime(2026, 11, 29, 3, tzinfo=UTC),
        }
    )


def rows_per_date(settings) -> tuple[dict[date, int], dict[date, int]]:
    engine = warehouse_engine(settings.warehouse_url)
    counted = []
    with engine.connect() as connection:
        for table in tables(settings.config):
            query = sa.select(table.c.score_date, sa.func.count()).group_by(table.c.score_date)
            counted.append({day: rows for day, rows in connection.execute(query).all()})
    engine.dispose()
    return counted[0], counted[1]


@pytest.fixture
def mistaken_history(warehouse_settings):
    """Two real dates scored, then a run for a mistyped 2999-12-31 that scored it, monitored it
    and promoted version 2, tagged as promoted for it."""
    from mlflow import MlflowClient

    settings = warehouse_settings
    engine = warehouse_engine(settings.warehouse_url)
    scores, monitoring = tables(settings.config)
    for score_date, rows in [*REAL_DATES.items(), (MISTAKE, 5)]:
        replace_scores(engine, scores, score_date, score_rows([f"customer-{i}" for i in range(rows)]))
    replace_monitoring(engine, monitoring, date(2026, 11, 29), monitoring_rows(2))
    replace_monitoring(engine, monitoring, MISTAKE, monitoring_rows(3))
    engine.dispose()
    use_mlflow(settings)
    client = MlflowClient()
    model = settings.config.registered_model
    client.create_registered_model(model)
    for promoted_for in ("2026-11-20", MISTAKE.isoformat()):
        version = client.create_model_version(
            model, source=str(settings.mlflow_artifact_root / "model"), tags={PROMOTED_FOR_TAG: promoted_for}
        )
    client.set_registered_model_alias(model, settings.config.champion_alias, version.version)
    return settings


def run_for(score_date: date, tmp_path):
    return run_context(tmp_path).model_copy(update={"score_date": score_date})


def test_a_mistaken_date_freezes_promotion_for_every_real_date(mistaken_history, tmp_path):
    with pytest.raises(PhaseSkipped, match="this run is for 2026-11-30, before 2999-12-31"):
        skip_unless_promotable(run_for(date(2026, 11, 30), tmp_path), mistaken_history)


def test_forgetting_the_date_removes_exactly_its_rows_and_lifts_the_freeze(mistaken_history, tmp_path):
    from mlflow import MlflowClient

    settings = mistaken_history
    report = forget(MISTAKE, settings)

    scores, monitoring = rows_per_date(settings)
    assert scores == REAL_DATES
    assert monitoring == {date(2026, 11, 29): 2}
    names = [table.fullname for table in tables(settings.config)]
    assert f"{names[0]}: removed 5 rows of 2999-12-31" in report
    assert f"{names[1]}: removed 3 rows of 2999-12-31" in report
    assert "version(s) 2 no longer recorded as promoted for 2999-12-31" in report
    assert "Promotion before: runs for dates before 2999-12-31 (the latest date scored or promoted for)" in report
    assert "Promotion now: runs for dates before 2026-11-29 (the latest date scored or promoted for)" in report

    champion = MlflowClient().get_model_version_by_alias(settings.config.registered_model, "champion")
    assert PROMOTED_FOR_TAG not in champion.tags and champion.tags[FORGOTTEN_PROMOTION_TAG] == "2999-12-31"
    skip_unless_promotable(run_for(date(2026, 11, 30), tmp_path), settings)  # no longer frozen: no skip
    with pytest.raises(PhaseSkipped, match="before 2026-11-29"):  # the real dates still hold theirs
        skip_unless_promotable(run_for(date(2026, 11, 27), tmp_path), settings)


def test_postgresql_drops_the_dates_partition(mistaken_history):
    settings = mistaken_history
    if not settings.warehouse_url.startswith("postgresql"):
        pytest.skip("partitions are PostgreSQL's")
    forget(MISTAKE, settings)
    engine = warehouse_engine(settings.warehouse_url)
    with engine.connect() as connection:
        partitions = connection.execute(
            sa.text("SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass(:table)"),
            {"table": settings.config.warehouse.table},
        ).scalar()
    engine.dispose()
    assert partitions == len(REAL_DATES)


def test_forgetting_again_changes_nothing_more(mistaken_history):
    settings = mistaken_history
    forget(MISTAKE, settings)
    again = forget(MISTAKE, settings)
    assert (
        "removed 0 rows of 2999-12-31" in again and "no version was recorded as promoted for 2999-12-31" in again
    )
    assert rows_per_date(settings) == (REAL_DATES, {date(2026, 11, 29): 2})
