import threading
import uuid
from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from churn.score import ScoringError, choose_model, risk_bands, run_score, score_frame
from churn.warehouse import (
    ScoringRecord,
    WarehouseError,
    replace_scores,
    scores_table,
    scoring_record,
    warehouse_engine,
)

BANDS = {"low": 0.3, "medium": 0.6, "high": 1.0}


def test_risk_band_upper_edges_are_inclusive():
    bands = risk_bands(pd.Series([0.0, 0.3, 0.30001, 0.6, 0.61, 1.0]), BANDS)
    assert bands.tolist() == ["low", "low", "medium", "medium", "high", "high"]


@pytest.mark.parametrize("bounds", [{"low": 0.6, "high": 0.3}, {"low": 0.3, "medium": 0.9}])
def test_bands_must_increase_and_cover_one(bounds):
    with pytest.raises(ValueError, match="risk band"):
        risk_bands(pd.Series([0.5]), bounds)


def _rows(ids, probability=0.5, version="1"):
    return pd.DataFrame(
        {
            "customer_id": ids,
            "churn_probability": probability,
            "risk_band": "medium",
            "model_name": "churn-classifier",
            "model_version": version,
            "run_id": "manual__x",
            "scored_at": datetime(2026, 11, 29, 2, tzinfo=UTC),
        }
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse(request, tmp_path):
    """The scores table in each supported warehouse, under a name no other test uses."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = warehouse_engine(url)
    table = scores_table(sa.MetaData(), f"churn_scores_{uuid.uuid4().hex[:12]}", None)
    yield engine, table
    table.drop(engine, checkfirst=True)
    engine.dispose()


def _stored(engine, table):
    with engine.connect() as connection:
        return pd.read_sql(sa.select(table).order_by(table.c.score_date, table.c.customer_id), connection)


def test_rerun_replaces_exactly_that_date(warehouse):
    engine, table = warehouse
    replace_scores(engine, table, date(2026, 11, 28), _rows(["a", "b", "c"]))
    replace_scores(engine, table, date(2026, 11, 29), _rows(["a", "b"], version="1"))
    replace_scores(engine, table, date(2026, 11, 29), _rows(["a", "b", "d"], probability=0.7, version="2"))
    stored = _stored(engine, table)
    assert len(stored) == 6
    latest = stored[stored["score_date"] == date(2026, 11, 29)]
    assert latest["customer_id"].tolist() == ["a", "b", "d"]
    assert set(latest["model_version"]) == {"2"}
    assert len(stored[stored["score_date"] == date(2026, 11, 28)]) == 3


def test_a_failed_write_leaves_the_previous_scores_whole(warehouse):
    engine, table = warehouse
    replace_scores(engine, table, date(2026, 11, 29), _rows(["a", "b", "c"]))
    duplicated = _rows(["x", "y", "x"])  # the primary key rejects this batch half-way through
    with pytest.raises(WarehouseError, match="earlier rows are unchanged"):
        replace_scores(engine, table, date(2026, 11, 29), duplicated)
    assert _stored(engine, table)["customer_id"].tolist() == ["a", "b", "c"]


def test_every_customer_gets_one_probability_and_band(trained_run, contract):
    import mlflow.sklearn

    from churn.tracking import use_mlflow

    run, settings = trained_run
    use_mlflow(settings)
    model = mlflow.sklearn.load_model(run["train"]["model_uri"])
    features = pd.read_parquet(run["feature"]["scoring"]["path"])
    scored = score_frame(model, features, contract, BANDS)
    assert len(scored) == len(features) == 600
    assert scored["customer_id"].is_unique
    assert scored["churn_probability"].between(0, 1).all()
    assert set(scored["risk_band"]) <= set(BANDS)


def test_scoring_without_a_champion_refuses_and_writes_nothing(settings, tmp_path):
    warehouse_url = f"sqlite:///{tmp_path / 'empty.db'}"
    run = {
        "score_date": "2026-11-29",
        "run_dir": str(tmp_path),
        "contract": "telco_churn",
        "package": {"promoted": False, "model_version": "1"},
    }
    with pytest.raises(ScoringError, match="champion"):
        run_score(run, settings.overridden(warehouse_url=warehouse_url))
    engine = sa.create_engine(warehouse_url)
    assert not sa.inspect(engine).has_table("churn_scores")
    engine.dispose()


def test_readers_see_the_old_set_or_the_new_set_never_a_mix(warehouse):
    engine, table = warehouse
    old = _rows([f"old-{i}" for i in range(1000)], version="1")
    new = _rows([f"new-{i}" for i in range(60_000)], version="2")
    replace_scores(engine, table, date(2026, 11, 29), old)
    observed: set[tuple[int, int]] = set()
    writer = threading.Thread(target=replace_scores, args=(engine, table, date(2026, 11, 29), new))
    writer.start()
    query = sa.select(sa.func.count(), sa.func.count(sa.distinct(table.c.model_version))).where(
        table.c.score_date == date(2026, 11, 29)
    )
    while writer.is_alive():
        with engine.connect() as connection:
            observed.add(tuple(connection.execute(query).one()))
    writer.join()
    with engine.connect() as connection:
        observed.add(tuple(connection.execute(query).one()))
    assert observed <= {(1000, 1), (60_000, 1)}
    assert (60_000, 1) in observed


def test_two_writers_of_one_date_leave_exactly_one_complete_set(warehouse):
    engine, table = warehouse
    batches = [
        _rows([f"a-{i}" for i in range(20_000)], version="1"),
        _rows([f"b-{i}" for i in range(15_000)], version="2"),
    ]
    errors = []

    def write(batch):
        try:
            replace_scores(engine, table, date(2026, 11, 29), batch)
        except Exception as error:  # collected, so the assertion shows it
            errors.append(error)

    writers = [threading.Thread(target=write, args=(batch,)) for batch in batches]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    stored = _stored(engine, table)
    assert errors == []
    assert sorted(stored["customer_id"]) in [sorted(batch["customer_id"]) for batch in batches]
    assert stored["model_version"].nunique() == 1


def test_configured_schema_is_created_and_the_key_is_date_and_customer(postgres_url):
    engine = sa.create_engine(postgres_url)
    schema = f"churn_{uuid.uuid4().hex[:10]}"
    table = scores_table(sa.MetaData(), "churn_scores", schema)
    try:
        replace_scores(engine, table, date(2026, 11, 29), _rows(["a", "b"]))
        inspector = sa.inspect(engine)
        assert inspector.has_table("churn_scores", schema=schema)
        assert inspector.get_pk_constraint("churn_scores", schema=schema)["constrained_columns"] == [
            "score_date",
            "customer_id",
        ]
        columns = {c["name"]: c["type"] for c in inspector.get_columns("churn_scores", schema=schema)}
        assert columns["scored_at"].timezone is True
        column_types = {name: str(kind) for name, kind in columns.items()}
        assert column_types["churn_probability"] == "DOUBLE PRECISION"
        assert column_types["scored_at"] == "TIMESTAMP"
        assert column_types["score_date"] == "DATE"
    finally:
        with engine.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def test_a_category_training_never_saw_is_still_scored(trained_run, contract):
    import mlflow.sklearn

    from churn.tracking import use_mlflow

    run, settings = trained_run
    use_mlflow(settings)
    model = mlflow.sklearn.load_model(run["train"]["model_uri"])
    features = pd.read_parquet(run["feature"]["scoring"]["path"]).head(20)
    features.loc[features.index[:3], "PaymentMethod"] = "Bank transfer (manual)"
    scored = score_frame(model, features, contract, BANDS)
    assert len(scored) == 20 and scored["churn_probability"].between(0, 1).all()


NOT_PROMOTED = {"promoted": False, "model_version": "7"}


@pytest.mark.parametrize(
    ("package", "recorded", "champion", "version", "reason"),
    [
        ({"promoted": True, "model_version": "7"}, "3", "7", "3", "scored 2026-11-29 before"),
        ({"promoted": True, "model_version": "7"}, None, "7", "7", "this run promoted it"),
        (NOT_PROMOTED, "3", "5", "3", "scored 2026-11-29 before"),
        (NOT_PROMOTED, None, "5", "5", "current 'champion'"),
    ],
)
def test_the_model_of_record_is_recorded_then_promoted_then_champion(
    settings, package, recorded, champion, version, reason
):
    chosen = choose_model(settings, package, recorded, champion, date(2026, 11, 29))
    assert (chosen.name, chosen.version) == (settings.registered_model, version)
    assert reason in chosen.reason


def test_without_a_recorded_version_or_a_champion_nothing_is_chosen(settings):
    with pytest.raises(ScoringError, match="no model carries the alias 'champion'"):
        choose_model(settings, NOT_PROMOTED, None, None, date(2026, 11, 29))


def test_the_scoring_record_names_the_dates_version_and_the_latest_date(warehouse):
    engine, table = warehouse
    assert scoring_record(engine, table, date(2026, 11, 29), "churn-classifier") == ScoringRecord(None, None)
    replace_scores(engine, table, date(2026, 11, 28), _rows(["a"], version="1"))
    replace_scores(engine, table, date(2026, 11, 29), _rows(["a", "b"], version="4"))
    assert scoring_record(engine, table, date(2026, 11, 29), "churn-classifier") == ScoringRecord(
        "4", date(2026, 11, 29)
    )
    assert scoring_record(engine, table, date(2026, 11, 28), "churn-classifier") == ScoringRecord(
        "1", date(2026, 11, 29)
    )
    assert scoring_record(engine, table, date(2026, 11, 30), "churn-classifier") == ScoringRecord(
        None, date(2026, 11, 29)
    )
    assert scoring_record(engine, table, date(2026, 11, 29), "another-model") == ScoringRecord(None, None)


def test_sqlite_readers_do_not_take_the_write_lock(tmp_path):
    import sqlite3

    path = tmp_path / "warehouse.db"
    engine = warehouse_engine(f"sqlite:///{path}")
    table = scores_table(sa.MetaData(), "churn_scores", None)
    replace_scores(engine, table, date(2026, 11, 29), _rows(["a"]))
    writer = sqlite3.connect(path, timeout=0.2, isolation_level=None)
    try:
        with engine.connect() as reader:
            assert reader.execute(sa.select(sa.func.count()).select_from(table)).scalar() == 1
            # Inside the reader's open transaction a writer can still take the write lock.
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("ROLLBACK")
    finally:
        writer.close()
        engine.dispose()


def test_a_write_is_refused_when_another_run_scored_the_date_meanwhile(warehouse):
    engine, table = warehouse
    seen = scoring_record(engine, table, date(2026, 11, 29), "churn-classifier")
    replace_scores(engine, table, date(2026, 11, 29), _rows(["a"], version="5"))  # the other run
    with pytest.raises(WarehouseError, match=r"another run scored 2026-11-29 with version 5 .*a retry"):
        replace_scores(engine, table, date(2026, 11, 29), _rows(["b"], version="4"), seen=seen)
    assert _stored(engine, table)["customer_id"].tolist() == ["a"]
    replace_scores(engine, table, date(2026, 11, 29), _rows(["b", "c"], version="5"), seen=seen)
    assert _stored(engine, table)["customer_id"].tolist() == ["b", "c"]
