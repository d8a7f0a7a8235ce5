"""Faults, made real: killed writers, unreachable servers, damaged models, bad challengers.
Each ends with a clear error and with the earlier scores, the champion and the history intact."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from churn.errors import PhaseSkipped
from churn.evaluate import run_evaluate
from churn.handoffs import EvaluateResult, FeatureResult, PackageResult, ScoreResult, TrainResult, ValidateResult
from churn.package import run_package
from churn.score import run_score
from churn.settings import Settings
from churn.storage import read_parquet, write_parquet_atomically
from churn.tracking import ModelUnavailableError, champion_version, use_mlflow
from churn.train import run_train
from churn.warehouse import WarehouseError, replace_scores, scores_table, warehouse_engine
from tests.conftest import SCORE_DATE, free_port, score_rows, stored_scores, train_a_run


@dataclass(frozen=True)
class PromotedRun:
    """One full pass of every phase whose challenger became champion and scored ``SCORE_DATE``."""

    validated: ValidateResult
    features: FeatureResult
    trained: TrainResult
    evaluated: EvaluateResult
    packaged: PackageResult
    scored: ScoreResult
    settings: Settings


@pytest.fixture(scope="module")
def promoted(tmp_path_factory, snapshots) -> PromotedRun:
    """A run of every phase, in its own state with a small model, promoted, with one scored date."""
    trained_run = train_a_run(tmp_path_factory.mktemp("faults"), snapshots)
    validated, features, trained, settings = (
        trained_run.validated,
        trained_run.features,
        trained_run.trained,
        trained_run.settings,
    )
    evaluated = run_evaluate(trained, settings)
    packaged = run_package(validated, trained, evaluated, settings)
    scored = run_score(features, packaged, settings)
    assert packaged.promoted and scored.rows_written == 600
    return PromotedRun(validated, features, trained, evaluated, packaged, scored, settings)


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
        return
    base = request.getfixturevalue("postgres_url")
    admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    name = f"faults_{os.getpid()}_{int(time.time() * 1000) % 10**8}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


WRITER = textwrap.dedent(
    """
    import sys
    from datetime import date
    import pandas as pd
    import sqlalchemy as sa
    from churn.warehouse import replace_scores, scores_table, warehouse_engine
    from datetime import UTC, datetime
    rows = pd.DataFrame({"customer_id": [f"new-{i}" for i in range(1_500_000)], "churn_probability": 0.9,
                         "risk_band": "high", "model_name": "churn-classifier", "model_version": "2",
                         "run_id": "run-2", "scored_at": datetime(2026, 11, 29, 3, tzinfo=UTC),
                         "model_run_id": "mlflow-run-2", "training_fingerprint": "fingerprint-2"})
    print("writing", flush=True)
    replace_scores(warehouse_engine(sys.argv[1]), scores_table(sa.MetaData(), "churn_scores", None),
                   date(2026, 11, 29), rows)
    print("done", flush=True)
    """
)


def _write_in_progress(url: str) -> bool:
    if url.startswith("sqlite"):
        return Path(sa.engine.make_url(url).database + "-journal").exists()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return bool(
                connection.execute(
                    sa.text(
                        "select count(*) from pg_stat_activity where query ilike 'copy %' and state = 'active'"
                    )
                ).scalar()
            )
    finally:
        engine.dispose()


def test_a_writer_killed_mid_write_leaves_the_previous_rows_and_a_rerun_completes(warehouse_url):
    table = scores_table(sa.MetaData(), "churn_scores", None)
    engine = warehouse_engine(warehouse_url)
    replace_scores(engine, table, SCORE_DATE, score_rows([f"old-{i}" for i in range(2000)], version="1"))
    engine.dispose()
    writer = subprocess.Popen([sys.executable, "-c", WRITER, warehouse_url], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _write_in_progress(warehouse_url):
        assert writer.poll() is None, "the writer finished before it could be killed; give it more rows"
        assert time.monotonic() < deadline, "the write never started"
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)

    survived = stored_scores(warehouse_url)
    assert len(survived) == 2000 and set(survived["model_version"]) == {"1"}

    engine = warehouse_engine(warehouse_url)
    replace_scores(engine, table, SCORE_DATE, score_rows([f"rerun-{i}" for i in range(1500)], version="2"))
    engine.dispose()
    after = stored_scores(warehouse_url)
    assert len(after) == 1500 and after["customer_id"].is_unique and set(after["model_version"]) == {"2"}


def test_unreachable_warehouse_fails_clearly_and_writes_nothing(promoted):
    settings = promoted.settings
    unreachable = settings.overridden(warehouse_url=f"postgresql+psycopg://churn:s3cret@127.0.0.1:{free_port()}/w")
    with pytest.raises(WarehouseError) as caught:
        run_score(promoted.features, promoted.packaged, unreachable)
    message = str(caught.value)
    assert "earlier rows are unchanged" in message and "127.0.0.1" in message
    assert "s3cret" not in message
    assert len(stored_scores(settings.warehouse_url)) == 600


def test_unreachable_mlflow_fails_clearly_and_keeps_the_scores(promoted, monkeypatch):
    settings = promoted.settings
    before = stored_scores(settings.warehouse_url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    offline = settings.overridden(mlflow_tracking_uri=f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(ModelUnavailableError, match="cannot be reached"):
            run_score(promoted.features, promoted.packaged, offline)
    finally:
        use_mlflow(settings)
    pd.testing.assert_frame_equal(stored_scores(settings.warehouse_url), before)


def test_corrupt_champion_artifacts_stop_scoring_and_keep_the_scores(promoted):
    from mlflow import MlflowClient

    settings = promoted.settings
    use_mlflow(settings)
    champion = champion_version(settings)
    model_dir = Path(
        MlflowClient().get_model_version_download_uri(champion.name, champion.version).removeprefix("file://")
    )
    pickle_file = next(model_dir.glob("model.pkl"))
    original = pickle_file.read_bytes()
    before = stored_scores(settings.warehouse_url)
    try:
        pickle_file.write_bytes(b"this is not a model")
        with pytest.raises(ModelUnavailableError, match=r"could not be loaded .*artifacts missing or corrupt"):
            run_score(promoted.features, promoted.packaged, settings)
        pickle_file.unlink()
        with pytest.raises(ModelUnavailableError, match="could not be loaded"):
            run_score(promoted.features, promoted.packaged, settings)
    finally:
        pickle_file.write_bytes(original)
    pd.testing.assert_frame_equal(stored_scores(settings.warehouse_url), before)


def test_challenger_trained_on_shuffled_labels_is_never_promoted(promoted, tmp_path):
    settings = promoted.settings
    use_mlflow(settings)
    champion_before = champion_version(settings).version
    features = read_parquet(promoted.features.training_path)
    shuffled = features.assign(Churn=features["Churn"].sample(frac=1.0, random_state=3).to_numpy())
    shuffled_path = tmp_path / "features" / "training.parquet"
    shuffled_path.parent.mkdir(parents=True)
    shuffled.to_parquet(shuffled_path)
    # The next night (not a rerun, so only quality decides), in its own run folder.
    next_night = promoted.features.run.model_copy(update={"score_date": date(2026, 11, 30), "run_dir": tmp_path})
    noisy = promoted.features.model_copy(update={"run": next_night, "training_path": shuffled_path})
    validated = promoted.validated.model_copy(update={"run": next_night})

    trained = run_train(noisy, settings)
    evaluated = run_evaluate(trained, settings)
    packaged = run_package(validated, trained, evaluated, settings)

    assert evaluated.promote is False
    assert "below the quality floor" in evaluated.reason
    assert packaged.promoted is False
    assert champion_version(settings).version == champion_before
    assert len(stored_scores(settings.warehouse_url)) == 600


def test_passwords_stay_out_of_manifests_model_card_and_logs(promoted, warehouse_url, caplog, monkeypatch):
    settings = promoted.settings
    password = "s3cret-Pa55word"
    if not warehouse_url.startswith("sqlite"):
        # The test server trusts loopback connections, so it accepts any password in the URL.
        warehouse_url = (
            sa.engine.make_url(warehouse_url).set(password=password).render_as_string(hide_password=False)
        )
    for variable in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(variable, "restored-after-the-test")
    secret = settings.overridden(warehouse_url=warehouse_url, mlflow_username="churn", mlflow_password=password)

    with caplog.at_level(logging.DEBUG):
        evaluated = run_evaluate(promoted.trained, secret)
        packaged = run_package(promoted.validated, promoted.trained, evaluated, secret)
        scored = run_score(promoted.features, packaged, secret)

    assert scored.rows_written == 600
    use_mlflow(settings)
    manifests = (promoted.features.run.run_dir / "manifests").glob("*.json")
    exposed = {
        "manifests": "".join(path.read_text() for path in manifests),
        "model card": champion_version(settings).description,
        "logs": caplog.text,
        "settings repr": repr(secret),
    }
    for where, text in exposed.items():
        assert password not in text, f"the password leaked into the {where}"


def test_rerunning_the_date_with_the_same_inputs_reproduces_scores_and_version(promoted):
    settings = promoted.settings
    before = stored_scores(settings.warehouse_url)
    # The date was scored: the rerun cannot promote, so it trains (and evaluates, packages) nothing.
    with pytest.raises(PhaseSkipped, match="scored before by version"):
        run_train(promoted.features, settings)
    scored = run_score(promoted.features, None, settings)
    after = stored_scores(settings.warehouse_url)
    assert scored.model_version == promoted.packaged.model_version
    columns = ["score_date", "customer_id", "churn_probability", "risk_band", "model_version"]
    pd.testing.assert_frame_equal(after[columns], before[columns])


PARQUET_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    import pandas as pd
    from churn.storage import write_parquet_atomically
    rows = 6_000_000
    frame = pd.DataFrame({"customer_id": np.arange(rows).astype(str), "tenure": np.arange(rows) % 72})
    write_parquet_atomically(frame, Path(sys.argv[1]))
    """
)


def test_a_parquet_writer_killed_mid_file_leaves_the_earlier_file_whole(tmp_path):
    destination = tmp_path / "raw" / "training.parquet"
    write_parquet_atomically(pd.DataFrame({"customer_id": ["a", "b"], "tenure": [1, 2]}), destination)
    before = destination.read_bytes()
    writer = subprocess.Popen([sys.executable, "-c", PARQUET_WRITER, str(destination)])
    deadline = time.monotonic() + 120
    partials = f".{destination.name}.*.partial"
    while not any(partial.stat().st_size > 0 for partial in destination.parent.glob(partials)):
        assert writer.poll() is None, "the writer finished before it could be killed; give it more rows"
        assert time.monotonic() < deadline, "the write never started"
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)

    assert destination.read_bytes() == before
    assert pd.read_parquet(destination)["customer_id"].tolist() == ["a", "b"]
    write_parquet_atomically(pd.DataFrame({"customer_id": ["c"], "tenure": [3]}), destination)
    assert pd.read_parquet(destination)["customer_id"].tolist() == ["c"]
    # The killed writer's hidden partial file stays behind; no reader ever takes it for the file.
    assert sorted(path.name for path in destination.parent.iterdir() if not path.name.startswith(".")) == [
        "training.parquet"
    ]
