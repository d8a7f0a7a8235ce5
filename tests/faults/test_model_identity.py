"""A score row names its model by what a lost and rebuilt registry cannot give another model,
and the champion alias moves only once the promoted version's scores are published.

Through the real phases: a later date's better model is registered and promoted by package,
but stays a challenger until score publishes the date; a real bad scoring input at score
leaves the alias where it was. After the MLflow store is lost and retraining makes another
model "version 1", a rerun of a date version 1 scored before is refused, and its rows kept.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from churn.errors import PhaseSkipped
from churn.evaluate import run_evaluate
from churn.feature import run_feature
from churn.generate import make_snapshots, write_snapshots
from churn.handoffs import FeatureResult, PackageResult
from churn.package import run_package
from churn.score import RegistryReplacedError, ScoringError, run_score
from churn.settings import Settings, load_settings
from churn.storage import read_parquet
from churn.tracking import champion_version, use_mlflow
from churn.train import run_train
from churn.validate import run_validate
from churn.warehouse import ScoringRecord, replace_scores, scores_table, scoring_record, warehouse_engine
from tests.conftest import ingest_for, quick_settings, run_parameters, score_rows, stored_scores

FIRST, LATER, AFTER_THE_LOSS = date(2026, 11, 20), date(2026, 11, 28), date(2026, 11, 29)


@dataclass(frozen=True)
class Packaged:
    """A run up to package: its features, and what package registered and decided."""

    features: FeatureResult
    packaged: PackageResult


def state_with_snapshots(home, snapshots: dict[date, tuple[int, int]]) -> Settings:
    """Settings with state under ``home``, each date's generated snapshots of (training rows,
    scoring rows) in its own source folder, each date's customers new."""
    settings = quick_settings(load_settings({"CHURN_HOME": str(home)}))
    # No promotion here waits for a person (tests/e2e/test_promotion_approval.py has those).
    approvals = settings.config.approvals.model_copy(update={"max_unapproved_auc_change": 1.0})
    settings = settings.overridden(config=settings.config.model_copy(update={"approvals": approvals}))
    for seed, (score_date, (training, scoring)) in enumerate(snapshots.items(), start=40):
        snapshot = make_snapshots(training, scoring, seed=seed)
        write_snapshots(snapshot, settings.sources_dir / score_date.isoformat())
    return settings


def through_package(settings: Settings, score_date: date, run_type: str = "scheduled") -> Packaged:
    """Every phase up to package for ``score_date``, on the date's snapshots; package None
    when the run cannot promote (it skips train, evaluate and package)."""
    params = run_parameters(
        settings.sources_dir / score_date.isoformat() / "training.csv",
        settings.sources_dir / score_date.isoformat() / "scoring.csv",
        score_date,
    )
    validated = run_validate(ingest_for(settings, params, run_type))
    features = run_feature(validated)
    try:
        trained = run_train(features, settings)
    except PhaseSkipped:
        return Packaged(features, None)
    return Packaged(features, run_package(validated, trained, run_evaluate(trained, settings), settings))


def champion(settings: Settings) -> str | None:
    use_mlflow(settings)
    version = champion_version(settings)
    return str(version.version) if version is not None else None


def registered(settings: Settings, version: str):
    use_mlflow(settings)
    return MlflowClient().get_model_version(settings.config.registered_model, version)


def assert_rows_carry_identity(settings: Settings, score_date: date, version: str) -> None:
    rows = stored_scores(settings.warehouse_url, score_date)
    model = registered(settings, version)
    assert len(rows) and set(rows["model_version"]) == {version}
    assert set(rows["model_run_id"]) == {model.run_id}
    assert set(rows["training_fingerprint"]) == {model.tags["training_fingerprint"]}


def without_column(features: FeatureResult, column: str, folder) -> FeatureResult:
    """``features`` whose scoring table lacks ``column``: a real input the model cannot score."""
    scoring = read_parquet(features.scoring_path).drop(columns=[column])
    path = folder / "scoring_without_contract.parquet"
    scoring.to_parquet(path)
    return features.model_copy(update={"scoring_path": path})


def test_the_alias_moves_only_once_score_has_published_the_promoted_versions_rows(tmp_path):
    # A first champion on few rows, then a later date's model on many new customers beats it.
    settings = state_with_snapshots(tmp_path, {FIRST: (600, 300), LATER: (6000, 300)})
    first = through_package(settings, FIRST)
    assert first.packaged.promoted and champion(settings) is None  # package moved nothing
    scored_first = run_score(first.features, first.packaged, settings)
    assert scored_first.promoted and champion(settings) == first.packaged.model_version
    assert_rows_carry_identity(settings, FIRST, first.packaged.model_version)

    later = through_package(settings, LATER)
    new_version = later.packaged.model_version
    assert later.packaged.promoted and new_version != first.packaged.model_version
    assert champion(settings) == first.packaged.model_version

    with pytest.raises(ScoringError, match="cannot score this run's features"):
        run_score(without_column(later.features, "Contract", tmp_path), later.packaged, settings)
    assert champion(settings) == first.packaged.model_version
    assert "promoted_for_score_date" not in registered(settings, new_version).tags
    assert stored_scores(settings.warehouse_url, LATER).empty

    scored = run_score(later.features, later.packaged, settings)
    assert scored.promoted and scored.model_version == new_version
    assert champion(settings) == new_version
    assert registered(settings, new_version).tags["promoted_for_score_date"] == LATER.isoformat()
    assert_rows_carry_identity(settings, LATER, new_version)
    assert "the champion alias now names it" in scored.summary()


def test_a_rerun_of_a_date_whose_version_now_names_another_model_is_refused(tmp_path):
    settings = state_with_snapshots(tmp_path, {FIRST: (600, 300), AFTER_THE_LOSS: (800, 300)})
    first = through_package(settings, FIRST)
    run_score(first.features, first.packaged, settings)
    before = stored_scores(settings.warehouse_url, FIRST)
    written_by = registered(settings, "1").run_id
    assert first.packaged.model_version == "1" and set(before["model_run_id"]) == {written_by}

    # The MLflow store is lost and a new one set up (a new path: this process's MLflow client
    # keeps its connection to a store's file); retraining starts the registry over at version 1.
    shutil.rmtree(settings.state_dir / "mlflow")
    rebuilt = settings.state_dir / "rebuilt_mlflow"
    settings = settings.overridden(
        mlflow_tracking_uri=f"sqlite:///{rebuilt / 'mlflow.db'}", mlflow_artifact_root=rebuilt / "artifacts"
    )
    after = through_package(settings, AFTER_THE_LOSS)
    assert after.packaged.model_version == "1" and after.packaged.promoted
    run_score(after.features, after.packaged, settings)
    now = registered(settings, "1").run_id
    assert now != written_by

    rerun = through_package(settings, FIRST, run_type="manual")
    assert rerun.packaged is None  # the date was scored before: the run cannot promote
    with pytest.raises(RegistryReplacedError) as refused:
        run_score(rerun.features, None, settings)
    message = str(refused.value)
    assert f"version 1 of churn-classifier is now run {now}" in message
    assert f"the scores of {FIRST} were written by run {written_by}" in message
    assert "the registry was replaced" in message and "Restore the MLflow store" in message
    assert f"remove its rows of churn_scores with `make forget-date DATE={FIRST}`" in message
    pd.testing.assert_frame_equal(stored_scores(settings.warehouse_url, FIRST), before)


# The scores table as releases before the identity columns created it.
OLD_COLUMNS = (
    ("score_date", sa.Date, {"primary_key": True}),
    ("customer_id", sa.String(64), {"primary_key": True}),
    ("churn_probability", sa.Float(precision=53), {"nullable": False}),
    ("risk_band", sa.String(16), {"nullable": False}),
    ("model_name", sa.String(128), {"nullable": False}),
    ("model_version", sa.String(32), {"nullable": False}),
    ("run_id", sa.String(250), {"nullable": False}),
    ("scored_at", sa.DateTime(timezone=True), {"nullable": False}),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def old_table(request, tmp_path):
    """A warehouse whose scores table has the old shape and one date's row (on PostgreSQL,
    partitioned by date, the row in its date's partition, in a schema of its own)."""
    if request.param == "sqlite":
        engine, schema = warehouse_engine(f"sqlite:///{tmp_path / 'warehouse.db'}"), None
    else:
        engine, schema = warehouse_engine(request.getfixturevalue("postgres_url")), f"old_{uuid.uuid4().hex[:10]}"
    partitioned = {"postgresql_partition_by": "LIST (score_date)"} if request.param == "postgresql" else {}
    old = sa.Table(
        "churn_scores",
        sa.MetaData(),
        *(sa.Column(name, kind, **options) for name, kind, options in OLD_COLUMNS),
        schema=schema,
        **partitioned,
    )
    with engine.begin() as connection:
        if schema:
            connection.execute(sa.schema.CreateSchema(schema))
        old.create(connection)
        if schema:
            connection.exec_driver_sql(
                f'CREATE TABLE "{schema}".churn_scores_old PARTITION OF "{schema}".churn_scores '
                f"FOR VALUES IN ('{FIRST}')"
            )
        connection.execute(
            sa.insert(old),
            [
                {
                    "score_date": FIRST,
                    "customer_id": "old-1",
                    "churn_probability": 0.3,
                    "risk_band": "medium",
                    "model_name": "churn-classifier",
                    "model_version": "1",
                    "run_id": "run-1",
                    "scored_at": datetime(2026, 11, 20, 2, tzinfo=UTC),
                }
            ],
        )
    yield engine, scores_table(sa.MetaData(), "churn_scores", schema)
    if schema:
        with engine.begin() as connection:
            connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


def test_an_old_scores_table_gains_the_identity_columns_and_keeps_its_rows(old_table):
    engine, table = old_table
    assert scoring_record(engine, table, FIRST, "churn-classifier") == ScoringRecord("1", FIRST)

    replace_scores(engine, table, LATER, score_rows(["a", "b"], version="2"))
    columns = {column["name"] for column in sa.inspect(engine).get_columns(table.name, schema=table.schema)}
    assert {"model_run_id", "training_fingerprint"} <= columns
    with engine.connect() as connection:
        ordered = sa.select(table).order_by(table.c.score_date, table.c.customer_id)
        rows = pd.DataFrame(connection.execute(ordered).mappings().all())
    assert rows["customer_id"].tolist() == ["old-1", "a", "b"]
    assert pd.isna(rows["model_run_id"].iloc[0]) and pd.isna(rows["training_fingerprint"].iloc[0])
    assert rows["model_run_id"].tolist()[1:] == ["mlflow-run-of-version-2"] * 2
    # The old date says nothing of its model's identity, so nothing is checked against it.
    assert scoring_record(engine, table, FIRST, "churn-classifier") == ScoringRecord("1", LATER)
    assert scoring_record(engine, table, LATER, "churn-classifier") == ScoringRecord(
        "2", LATER, "mlflow-run-of-version-2", "fingerprint-of-version-2"
    )

    # Its date's rows (on PostgreSQL, its old partition) are replaced like any other.
    replace_scores(engine, table, FIRST, score_rows(["c"], version="2"))
    with engine.connect() as connection:
        first = connection.execute(
            sa.select(table.c.customer_id, table.c.model_run_id).where(table.c.score_date == FIRST)
        ).all()
    assert [tuple(row) for row in first] == [("c", "mlflow-run-of-version-2")]
