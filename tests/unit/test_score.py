import itertools
import threading
import uuid
from datetime import date

import pandas as pd
import pytest
import sqlalchemy as sa

from churn.handoffs import FeatureResult, PackageResult, PhaseFailure, RunContext
from churn.manifest import read_manifests
from churn.score import ScoringError, choose_model, partition_bounds, risk_bands, run_score, score_frame
from churn.storage import read_parquet
from churn.warehouse import (
    PublishRefused,
    ScoringRecord,
    WarehouseError,
    prepare_staging,
    publish_staged,
    replace_scores,
    scores_table,
    scoring_record,
    stage_partition,
    warehouse_engine,
)
from tests.conftest import SCORE_DATE, run_context, score_rows, stored_scores

BANDS = {"low": 0.3, "medium": 0.6, "high": 1.0}


def test_risk_band_upper_edges_are_inclusive():
    bands = risk_bands(pd.Series([0.0, 0.3, 0.30001, 0.6, 0.61, 1.0]), BANDS)
    assert bands.tolist() == ["low", "low", "medium", "medium", "high", "high"]


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
    replace_scores(engine, table, date(2026, 11, 28), score_rows(["a", "b", "c"]))
    replace_scores(engine, table, date(2026, 11, 29), score_rows(["a", "b"], version="1"))
    replace_scores(engine, table, date(2026, 11, 29), score_rows(["a", "b", "d"], probability=0.7, version="2"))
    stored = _stored(engine, table)
    assert len(stored) == 6
    latest = stored[stored["score_date"] == date(2026, 11, 29)]
    assert latest["customer_id"].tolist() == ["a", "b", "d"]
    assert set(latest["model_version"]) == {"2"}
    assert len(stored[stored["score_date"] == date(2026, 11, 28)]) == 3


def test_a_failed_write_leaves_the_previous_scores_whole(warehouse):
    engine, table = warehouse
    replace_scores(engine, table, date(2026, 11, 29), score_rows(["a", "b", "c"]))
    duplicated = score_rows(["x", "y", "x"])  # the primary key rejects this batch half-way through
    with pytest.raises(WarehouseError, match="earlier rows are unchanged"):
        replace_scores(engine, table, date(2026, 11, 29), duplicated)
    assert _stored(engine, table)["customer_id"].tolist() == ["a", "b", "c"]


def test_every_customer_gets_one_probability_and_band(trained_run, contract):
    import mlflow.sklearn

    from churn.tracking import use_mlflow

    use_mlflow(trained_run.settings)
    model = mlflow.sklearn.load_model(trained_run.trained.model_uri)
    features = read_parquet(trained_run.features.scoring_path)
    scored = score_frame(model, features, contract, BANDS)
    assert len(scored) == len(features) == 600
    assert scored["customer_id"].is_unique
    assert set(scored["customer_id"]) == set(features["customerID"])
    assert scored["churn_probability"].between(0, 1).all()
    assert set(scored["risk_band"]) <= set(BANDS)


def _packaged(run: RunContext, *, promoted: bool, version: str = "7") -> PackageResult:
    return PackageResult(
        run=run,
        model_name="churn-classifier",
        model_version=version,
        reused_existing_version=False,
        promoted=promoted,
        champion_version=version if promoted else None,
    )


def test_scoring_without_a_champion_refuses_and_writes_nothing(settings, tmp_path):
    warehouse_url = f"sqlite:///{tmp_path / 'empty.db'}"
    run = run_context(tmp_path / "run")
    features = FeatureResult(
        run=run,
        derived_features=["tenure_band"],
        unseen_categories={},
        training_path=tmp_path / "run" / "features" / "training.parquet",
        scoring_path=tmp_path / "run" / "features" / "scoring.parquet",
    )
    with pytest.raises(ScoringError, match="no model carries the alias 'champion'"):
        run_score(
            features, _packaged(run, promoted=False, version="1"), settings.overridden(warehouse_url=warehouse_url)
        )
    engine = sa.create_engine(warehouse_url)
    assert not sa.inspect(engine).has_table("churn_scores")
    engine.dispose()
    recorded = read_manifests(run.run_dir)
    assert "score" not in recorded
    assert isinstance(recorded["failed"], PhaseFailure)
    assert (recorded["failed"].phase, recorded["failed"].error_type) == ("score", "ScoringError")


def test_run_score_writes_the_dates_scores_with_the_model_of_record(trained_run, tmp_path):
    import mlflow

    from churn.handoffs import ScoreResult
    from churn.tracking import use_mlflow

    model_name = f"churn-classifier-{uuid.uuid4().hex[:8]}"
    warehouse_url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    settings = trained_run.settings.overridden(
        warehouse_url=warehouse_url,
        config=trained_run.settings.config.model_copy(update={"registered_model": model_name}),
    )
    use_mlflow(settings)
    version = mlflow.register_model(trained_run.trained.model_uri, model_name).version
    run = trained_run.features.run.model_copy(update={"run_dir": tmp_path / "run"})
    features = trained_run.features.model_copy(update={"run": run})
    promoted = _packaged(run, promoted=True, version=str(version))

    scored = run_score(features.model_dump(mode="json"), promoted.model_dump(mode="json"), settings)
    assert isinstance(scored, ScoreResult)
    assert (scored.rows_written, scored.model_version, scored.table) == (600, str(version), "churn_scores")
    assert "this run promoted it" in scored.model_chosen_because
    assert sum(scored.risk_band_counts.values()) == 600
    assert read_manifests(run.run_dir)["score"] == scored
    stored = stored_scores(warehouse_url, SCORE_DATE)
    assert len(stored) == 600 and set(stored["model_version"]) == {str(version)}
    assert set(stored["model_name"]) == {model_name} and set(stored["run_id"]) == {run.airflow_run_id}

    # A rerun of the date that promoted nothing, with no champion, still has the date's model.
    rerun = run_score(features, _packaged(run, promoted=False, version="99"), settings)
    assert rerun.model_version == str(version) and "scored 2026-11-29 before" in rerun.model_chosen_because
    assert len(stored_scores(warehouse_url, SCORE_DATE)) == 600


def test_readers_see_the_old_set_or_the_new_set_never_a_mix(warehouse):
    engine, table = warehouse
    old = score_rows([f"old-{i}" for i in range(1000)], version="1")
    new = score_rows([f"new-{i}" for i in range(60_000)], version="2")
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
        score_rows([f"a-{i}" for i in range(20_000)], version="1"),
        score_rows([f"b-{i}" for i in range(15_000)], version="2"),
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
        replace_scores(engine, table, date(2026, 11, 29), score_rows(["a", "b"]))
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

    use_mlflow(trained_run.settings)
    model = mlflow.sklearn.load_model(trained_run.trained.model_uri)
    features = read_parquet(trained_run.features.scoring_path).head(20)
    features.loc[features.index[:3], "PaymentMethod"] = "Bank transfer (manual)"
    scored = score_frame(model, features, contract, BANDS)
    assert len(scored) == 20 and scored["churn_probability"].between(0, 1).all()


@pytest.mark.parametrize(
    ("promoted", "recorded", "champion", "version", "reason"),
    [
        # Only a retraining run that drift started promotes for a scored date: it rescores it.
        (True, "3", "7", "7", "this run promoted it to 'champion'"),
        (True, None, "7", "7", "this run promoted it to 'champion'"),
        (False, "3", "5", "3", "scored 2026-11-29 before"),
        (False, None, "5", "5", "current 'champion'"),
    ],
)
def test_the_model_of_record_is_promoted_then_recorded_then_champion(
    settings, tmp_path, promoted, recorded, champion, version, reason
):
    packaged = _packaged(run_context(tmp_path), promoted=promoted, version="7")
    chosen = choose_model(settings, packaged, recorded, champion, date(2026, 11, 29))
    assert (chosen.name, chosen.version) == (settings.config.registered_model, version)
    assert reason in chosen.reason


@pytest.mark.parametrize(
    ("recorded", "version", "reason"), [("3", "3", "scored 2026-11-29 before"), (None, "5", "current")]
)
def test_a_run_that_skipped_packaging_scores_with_the_dates_model_of_record(settings, recorded, version, reason):
    chosen = choose_model(settings, None, recorded, "5", date(2026, 11, 29))
    assert chosen.version == version and reason in chosen.reason


def test_without_a_recorded_version_or_a_champion_nothing_is_chosen(settings, tmp_path):
    with pytest.raises(ScoringError, match="no model carries the alias 'champion'"):
        choose_model(settings, _packaged(run_context(tmp_path), promoted=False), None, None, date(2026, 11, 29))


def test_the_scoring_record_names_the_dates_version_and_the_latest_date(warehouse):
    engine, table = warehouse
    assert scoring_record(engine, table, date(2026, 11, 29), "churn-classifier") == ScoringRecord(None, None)
    replace_scores(engine, table, date(2026, 11, 28), score_rows(["a"], version="1"))
    replace_scores(engine, table, date(2026, 11, 29), score_rows(["a", "b"], version="4"))
    assert scoring_record(engine, table, date(2026, 11, 29), "churn-classifier") == ScoringRecord(
        "4", date(2026, 11, 29), "mlflow-run-of-version-4", "fingerprint-of-version-4"
    )
    assert scoring_record(engine, table, date(2026, 11, 28), "churn-classifier") == ScoringRecord(
        "1", date(2026, 11, 29), "mlflow-run-of-version-1", "fingerprint-of-version-1"
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
    replace_scores(engine, table, date(2026, 11, 29), score_rows(["a"]))
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
    replace_scores(engine, table, date(2026, 11, 29), score_rows(["a"], version="5"))  # the other run
    with pytest.raises(
        PublishRefused, match=r"another run scored 2026-11-29 with version 5 .*score the date again"
    ):
        replace_scores(engine, table, date(2026, 11, 29), score_rows(["b"], version="4"), seen=seen)
    assert _stored(engine, table)["customer_id"].tolist() == ["a"]
    replace_scores(engine, table, date(2026, 11, 29), score_rows(["b", "c"], version="5"), seen=seen)
    assert _stored(engine, table)["customer_id"].tolist() == ["b", "c"]


def _registered(trained_run, warehouse_url: str, **scoring):
    """Settings for a fresh registered model holding the trained run's model, writing to ``warehouse_url``."""
    import mlflow

    from churn.tracking import use_mlflow

    config = trained_run.settings.config
    settings = trained_run.settings.overridden(
        warehouse_url=warehouse_url,
        config=config.model_copy(
            update={
                "registered_model": f"churn-classifier-{uuid.uuid4().hex[:8]}",
                "scoring": config.scoring.model_copy(update=scoring),
            }
        ),
    )
    use_mlflow(settings)
    version = mlflow.register_model(trained_run.trained.model_uri, settings.config.registered_model).version
    return settings, str(version)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_partitions_and_batches_score_like_one_piece(trained_run, contract, tmp_path, request, kind):
    import mlflow.sklearn
    import numpy as np

    url = f"sqlite:///{tmp_path / 'warehouse.db'}" if kind == "sqlite" else request.getfixturevalue("postgres_url")
    settings, version = _registered(trained_run, url, partition_rows=130, batch_rows=7)
    run = trained_run.features.run.model_copy(update={"run_dir": tmp_path / "run"})
    features = trained_run.features.model_copy(update={"run": run})

    scored = run_score(features, _packaged(run, promoted=True, version=version), settings)

    assert (scored.partitions, scored.rows_written) == (5, 600)
    model = mlflow.sklearn.load_model(trained_run.trained.model_uri)
    whole = score_frame(model, read_parquet(features.scoring_path), contract, BANDS).sort_values("customer_id")
    stored = stored_scores(url, SCORE_DATE)
    stored = stored[stored["model_name"] == settings.config.registered_model]
    assert stored["customer_id"].tolist() == whole["customer_id"].tolist()
    np.testing.assert_allclose(stored["churn_probability"], whole["churn_probability"], rtol=0, atol=1e-9)
    assert stored["risk_band"].tolist() == whole["risk_band"].tolist()
    assert scored.risk_band_counts == whole["risk_band"].value_counts().sort_index().to_dict()


def test_partition_bounds_cover_every_row_once_in_near_equal_parts():
    assert partition_bounds(0, 100) == [(0, 0)]
    assert partition_bounds(100, 100) == [(0, 100)]
    assert partition_bounds(10, 3) == [(0, 2), (2, 5), (5, 7), (7, 10)]
    bounds = partition_bounds(1_000_003, 250_000)
    assert len(bounds) == 5 and bounds[0][0] == 0 and bounds[-1][1] == 1_000_003
    assert all(end == first for (_, end), (first, _) in itertools.pairwise(bounds))
    assert max(end - first for first, end in bounds) - min(end - first for first, end in bounds) <= 1


def test_a_row_range_reads_across_row_groups(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from churn.storage import read_parquet_row_range

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"n": list(range(95))}), path, row_group_size=10)
    for first, end, batch_rows in [(0, 95, 7), (13, 47, 5), (20, 30, 100), (94, 95, 1), (40, 40, 3)]:
        frames = list(read_parquet_row_range(path, first, end, batch_rows))
        assert all(len(frame) <= batch_rows for frame in frames)
        read = pd.concat(frames)["n"].tolist() if frames else []
        assert read == list(range(first, end)), (first, end, batch_rows)


def test_a_retried_or_duplicated_partition_stages_its_rows_once(warehouse):
    engine, table = warehouse
    replace_scores(engine, table, SCORE_DATE, score_rows(["old"]))
    staging = prepare_staging(engine, table, SCORE_DATE, "run-1")
    assert stage_partition(engine, staging, SCORE_DATE, 0, score_rows(["a", "b"], version="2")) == 2
    assert stage_partition(engine, staging, SCORE_DATE, 1, score_rows(["c"], version="2")) == 1
    assert stage_partition(engine, staging, SCORE_DATE, 1, score_rows(["c"], version="2")) == 1  # the retry
    assert _stored(engine, table)["customer_id"].tolist() == ["old"]  # nothing visible before publishing
    assert publish_staged(engine, table, staging, SCORE_DATE, {0: 2, 1: 1}) == 3
    assert _stored(engine, table)["customer_id"].tolist() == ["a", "b", "c"]
    assert not sa.inspect(engine).has_table(staging.name) or engine.dialect.name == "postgresql"


def test_publishing_refuses_a_partition_that_did_not_stage_what_it_reported(warehouse):
    engine, table = warehouse
    replace_scores(engine, table, SCORE_DATE, score_rows(["old"]))
    staging = prepare_staging(engine, table, SCORE_DATE, "run-1")
    stage_partition(engine, staging, SCORE_DATE, 0, score_rows(["a", "b"], version="2"))
    with pytest.raises(PublishRefused, match=r"do not match .*\{0: 2\}.*\{0: 2, 1: 1\}"):
        publish_staged(engine, table, staging, SCORE_DATE, {0: 2, 1: 1})
    assert _stored(engine, table)["customer_id"].tolist() == ["old"]


def test_publishing_again_after_the_commit_changes_nothing_and_succeeds(warehouse):
    engine, table = warehouse
    staging = prepare_staging(engine, table, SCORE_DATE, "plan-1")
    stage_partition(engine, staging, SCORE_DATE, 0, score_rows(["a", "b"], version="2"))
    assert publish_staged(engine, table, staging, SCORE_DATE, {0: 2}, run_id="run-2") == 2
    # The task failed after the commit (say, writing its manifest); Airflow retries it.
    assert publish_staged(engine, table, staging, SCORE_DATE, {0: 2}, run_id="run-2") == 2
    assert _stored(engine, table)["customer_id"].tolist() == ["a", "b"]


def test_a_new_plan_for_a_published_run_leaves_the_dates_scores_in_place(warehouse):
    engine, table = warehouse
    replace_scores(engine, table, SCORE_DATE, score_rows(["a", "b"], version="2"))
    staging = prepare_staging(engine, table, SCORE_DATE, "a cleared run's new plan")
    assert _stored(engine, table)["customer_id"].tolist() == ["a", "b"]  # visible until publishing
    stage_partition(engine, staging, SCORE_DATE, 0, score_rows(["c"], version="2"))
    publish_staged(engine, table, staging, SCORE_DATE, {0: 1})
    assert _stored(engine, table)["customer_id"].tolist() == ["c"]


def test_a_refused_publish_is_permanent_and_names_what_to_do(warehouse):
    from churn.errors import PermanentError

    engine, table = warehouse
    staging = prepare_staging(engine, table, SCORE_DATE, "plan-1")
    stage_partition(engine, staging, SCORE_DATE, 0, score_rows(["a"], version="2"))
    with pytest.raises(PublishRefused, match="score the date again") as refused:
        publish_staged(engine, table, staging, SCORE_DATE, {0: 5})
    assert isinstance(refused.value, PermanentError)


def test_postgresql_finds_the_dates_partition_whatever_the_sessions_date_style(postgres_url):
    url = sa.engine.make_url(postgres_url).update_query_dict({"options": "-c datestyle=SQL,DMY"})
    engine = warehouse_engine(url.render_as_string(hide_password=False))
    reader = warehouse_engine(postgres_url)  # psycopg reads timestamps in ISO style only
    table = scores_table(sa.MetaData(), f"churn_scores_{uuid.uuid4().hex[:12]}", None)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW datestyle").scalar() == "SQL, DMY"
        for version in ("1", "2"):
            replace_scores(engine, table, SCORE_DATE, score_rows(["a", "b"], version=version))
        assert set(_stored(reader, table)["model_version"]) == {"2"}
    finally:
        table.drop(reader, checkfirst=True)
        engine.dispose()
        reader.dispose()


def test_postgresql_publishes_a_date_by_swapping_its_partition(postgres_url):
    engine = warehouse_engine(postgres_url)
    table = scores_table(sa.MetaData(), f"churn_scores_{uuid.uuid4().hex[:12]}", None)
    try:
        for version in ("1", "2"):
            replace_scores(engine, table, SCORE_DATE, score_rows(["a", "b"], version=version))
        replace_scores(engine, table, date(2026, 11, 28), score_rows(["a"]))
        with engine.connect() as connection:
            partitions = connection.execute(
                sa.text("SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass(:name)"),
                {"name": table.name},
            ).scalar()
            kind = connection.execute(
                sa.text("SELECT relkind FROM pg_class WHERE oid = to_regclass(:name)"), {"name": table.name}
            ).scalar()
        assert (kind, partitions) == ("p", 2)  # one partition per date; the replaced one was dropped
        assert set(_stored(engine, table).query("score_date == @SCORE_DATE")["model_version"]) == {"2"}
    finally:
        table.drop(engine, checkfirst=True)
        engine.dispose()


def test_batches_are_written_as_one_set(warehouse):
    engine, table = warehouse
    replace_scores(engine, table, SCORE_DATE, score_rows(["old"]))
    batches = (score_rows([f"c-{start + i}" for i in range(250)], version="2") for start in range(0, 1000, 250))
    assert replace_scores(engine, table, SCORE_DATE, batches) == 1000
    stored = _stored(engine, table)
    assert len(stored) == 1000 and stored["customer_id"].is_unique and set(stored["model_version"]) == {"2"}


def test_a_batch_that_fails_to_score_writes_nothing_and_keeps_its_own_error(warehouse):
    engine, table = warehouse
    replace_scores(engine, table, SCORE_DATE, score_rows(["a", "b"]))

    def batches():
        yield score_rows(["x", "y"], version="2")
        raise ScoringError("the model returned probabilities outside [0, 1]; refusing to write them")

    with pytest.raises(ScoringError, match="outside"):
        replace_scores(engine, table, SCORE_DATE, batches())
    assert _stored(engine, table)["customer_id"].tolist() == ["a", "b"]


def test_awkward_ids_and_timestamps_survive_the_copy(warehouse):
    engine, table = warehouse
    ids = ["a,b", 'say "hi"', "ünïcödé", "tab\there", "  padded  "]
    written = score_rows(ids, probability=0.123456789012345)
    replace_scores(engine, table, SCORE_DATE, written)
    stored = _stored(engine, table).set_index("customer_id")
    assert sorted(stored.index) == sorted(ids)
    assert (stored["churn_probability"] == 0.123456789012345).all()
    # SQLite keeps the UTC wall time without its zone; PostgreSQL keeps the instant.
    stamps = {pd.Timestamp(value) for value in stored["scored_at"]}
    assert {stamp.tz_convert("UTC") if stamp.tzinfo else stamp.tz_localize("UTC") for stamp in stamps} == {
        pd.Timestamp("2026-11-29T02:00:00Z")
    }
