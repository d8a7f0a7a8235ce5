import socket
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from churn.errors import PhaseError, PhaseSkipped
from churn.handoffs import (
    EvaluateResult,
    FamilySelection,
    FeatureResult,
    IngestResult,
    LandedSnapshot,
    ModelSelection,
    MonitorResult,
    PackageResult,
    PhaseFailure,
    RunContext,
    ScoreResult,
    SkippedPhases,
    TrainResult,
    ValidatedSnapshot,
    ValidateResult,
)
from churn.locations import location
from churn.manifest import manifest_path, read_manifests, run_phase, write_manifest
from churn.sources import SourceError
from tests.conftest import EXPECTED_OWNERS, free_port, run_context

PHASES = list(EXPECTED_OWNERS)  # the lifecycle's order


def _records(run: RunContext, version: str = "1") -> dict:
    """One plausible result of each phase of ``run``."""
    raw, landed = run.run_dir / "raw", {"format": "csv", "bytes": 10, "sha256": "0" * 64}
    return {
        "ingest": IngestResult(
            run=run,
            training=LandedSnapshot(source="/d/training.csv", path=raw / "training.csv", **landed),
            scoring=LandedSnapshot(source="/d/scoring.csv", path=raw / "scoring.csv", **landed),
        ),
        "validate": ValidateResult(
            run=run,
            contract_name="telco_churn",
            contract_sha256="c" * 64,
            report=run.run_dir / "data_docs" / "index.html",
            training=ValidatedSnapshot(rows=3000, expectations=40, path=run.run_dir / "validated" / "training.pq"),
            scoring=ValidatedSnapshot(rows=600, expectations=38, path=run.run_dir / "validated" / "scoring.pq"),
        ),
        "feature": FeatureResult(
            run=run,
            derived_features=["tenure_band"],
            unseen_categories={},
            training_path=run.run_dir / "features" / "training.parquet",
            scoring_path=run.run_dir / "features" / "scoring.parquet",
        ),
        "train": TrainResult(
            run=run,
            mlflow_run_id="r1",
            model_uri="models:/m-1",
            model_family="logistic_regression",
            cv_roc_auc=0.84,
            training_fingerprint="f" * 64,
            train_rows=2400,
            train_rows_available=2400,
            test_rows=600,
            test_path=run.run_dir / "model" / "test_split.parquet",
            labelled_path=run.run_dir / "features" / "training.parquet",
            selection=ModelSelection(
                families=[
                    FamilySelection(
                        family="logistic_regression",
                        params={"C": 1.0, "class_weight": None},
                        cv_roc_auc=0.84,
                        cv_roc_auc_std=0.01,
                        configured_cv_roc_auc=0.84,
                        configured_cv_roc_auc_std=0.01,
                        search="searched",
                        configurations_tried=27,
                        seconds=4.2,
                    )
                ],
                search_spaces={"logistic_regression": {"C": {"low": 0.01, "high": 100.0, "log": True}}},
                time_budget_seconds=30.0,
                seconds=4.3,
                cv_rows=2400,
                cv_folds=5,
            ),
        ),
        "evaluate": EvaluateResult(
            run=run,
            metrics={"test_roc_auc": 0.83},
            champion_version=None,
            champion_test_roc_auc=None,
            promote=True,
            reason="no champion yet",
        ),
        "package": PackageResult(
            run=run,
            model_name="churn-classifier",
            model_version=version,
            reused_existing_version=False,
            promoted=True,
            champion_version=version,
        ),
        "score": ScoreResult(
            run=run,
            rows_written=600,
            table="churn_scores",
            warehouse="sqlite:///warehouse.db",
            model_version=version,
            model_chosen_because="this run promoted it to 'champion'",
            risk_band_counts={"high": 100, "low": 300, "medium": 200},
            partitions=1,
        ),
        "monitor": MonitorResult(
            run=run,
            model_version=version,
            reference_path=str(run.run_dir / "features" / "training.parquet"),
            reference_mlflow_run_id="r1",
            table="churn_monitoring",
            rows_written=90,
            report=run.run_dir / "monitoring" / "report.html",
            drifted_features={"MonthlyCharges": 0.41},
            prediction_psi=0.05,
            feature_psi_threshold=0.25,
            prediction_psi_threshold=0.1,
            realised_roc_auc=None,
            realised_auc_score_date=None,
            realised_auc_customers=0,
            retraining_requested=True,
            retraining_reason="retraining requested: MonthlyCharges PSI 0.410 > 0.25",
        ),
    }


def _completed_run(run_dir: Path) -> dict:
    """A run folder that holds the manifests of all seven phases."""
    records = _records(run_context(run_dir))
    for phase, record in records.items():
        write_manifest(run_dir, phase, record)
    assert set(read_manifests(run_dir)) == set(PHASES)
    return records


def test_manifests_round_trip_as_typed_records(tmp_path: Path):
    records = _records(run_context(tmp_path))
    write_manifest(tmp_path, "ingest", records["ingest"])
    assert manifest_path(tmp_path, "ingest") == tmp_path / "manifests" / "ingest.json"
    read = read_manifests(tmp_path)
    assert read == {"ingest": records["ingest"]}
    assert isinstance(read["ingest"], IngestResult)
    assert read["ingest"].training.path == location(tmp_path / "raw" / "training.csv")
    assert not list(tmp_path.rglob("*.partial"))


def test_every_phases_result_round_trips(tmp_path: Path):
    records = _completed_run(tmp_path)
    read = read_manifests(tmp_path)
    assert read == records
    assert {phase: type(record) for phase, record in read.items()} == {
        phase: type(record) for phase, record in records.items()
    }


def test_a_succeeding_phase_writes_its_manifest_and_returns_its_result(tmp_path: Path):
    run = run_context(tmp_path)
    record = _records(run)["ingest"]
    assert run_phase("ingest", run, lambda: record) is record
    assert read_manifests(tmp_path) == {"ingest": record}


def test_a_failing_phase_records_its_message_and_fails_the_task_at_once(tmp_path: Path):
    def fail():
        raise ValueError("column 'tenure' holds text")

    with pytest.raises(
        PhaseError, match=r"^validate failed with ValueError, .*column 'tenure' holds text$"
    ) as caught:
        run_phase("validate", run_context(tmp_path), fail)
    assert isinstance(caught.value, AirflowFailException)  # Airflow fails the task without retries
    assert isinstance(caught.value.__cause__, ValueError)  # the original, with its traceback
    assert (tmp_path / "manifests" / "failed.json").is_file()
    failed = read_manifests(tmp_path)["failed"]
    assert isinstance(failed, PhaseFailure)
    assert failed == PhaseFailure(phase="validate", error_type="ValueError", error="column 'tenure' holds text")
    assert "validate" not in read_manifests(tmp_path)


def test_a_recorded_failure_holds_no_password(tmp_path: Path):
    def fail():
        raise RuntimeError("cannot reach postgresql+psycopg://churn:s3cr3t@db.internal/warehouse")

    with pytest.raises(PhaseError) as caught:
        run_phase("score", run_context(tmp_path), fail)
    assert "s3cr3t" not in str(caught.value) and "churn:***@db.internal" in str(caught.value)
    assert "s3cr3t" in str(caught.value.__cause__)  # the original goes on unchanged, as its cause
    failed = read_manifests(tmp_path)["failed"]
    assert "s3cr3t" not in failed.error and "churn:***@db.internal" in failed.error
    assert "s3cr3t" not in manifest_path(tmp_path, "failed").read_text(encoding="utf-8")


def warehouse_down():
    """What connecting to a warehouse that is down raises."""
    socket.create_connection(("127.0.0.1", free_port()), timeout=5)


def test_an_outage_goes_on_unchanged_to_airflows_retries(tmp_path: Path):
    with pytest.raises(ConnectionRefusedError) as caught:
        run_phase("score", run_context(tmp_path), warehouse_down)
    assert not isinstance(caught.value, AirflowFailException)
    failed = read_manifests(tmp_path)["failed"]
    assert (failed.phase, failed.error_type) == ("score", "ConnectionRefusedError")


def test_errors_that_already_tell_airflow_what_to_do_go_on_unchanged(tmp_path: Path):
    for told in (SourceError("source file not found: /d/training.csv"), AirflowSkipException("nothing to do")):

        def fail(error=told):
            raise error

        with pytest.raises(type(told)) as caught:
            run_phase("ingest", run_context(tmp_path), fail)
        assert caught.value is told


def _skip_training(run: RunContext) -> SkippedPhases:
    skipped = SkippedPhases(
        run=run, phases=["train", "evaluate", "package"], reason="this run cannot promote (a backfill)"
    )

    def skip():
        raise PhaseSkipped(skipped)

    with pytest.raises(PhaseSkipped) as caught:
        run_phase("train", run, skip)
    assert isinstance(caught.value, AirflowSkipException) and caught.value.args == (skipped.reason,)
    return skipped


def test_a_skipped_phase_records_what_it_skipped_and_why_not_a_failure(tmp_path: Path, caplog):
    run = run_context(tmp_path)
    records = _records(run)
    for phase in ("ingest", "validate", "feature"):
        run_phase(phase, run, lambda phase=phase: records[phase])

    with caplog.at_level("INFO", logger="churn"):
        skipped = _skip_training(run)

    assert read_manifests(tmp_path) == {**{p: records[p] for p in PHASES[:3]}, "skipped": skipped}
    assert "train: skipped train, evaluate, package: this run cannot promote (a backfill)" in caplog.messages
    run_phase("score", run, lambda: records["score"])  # scoring keeps the record of what was skipped
    assert read_manifests(tmp_path)["skipped"] == skipped


def test_rerunning_a_skipped_phase_forgets_that_it_was_skipped(tmp_path: Path):
    run = run_context(tmp_path)
    _skip_training(run)
    trained = _records(run)["train"]
    run_phase("train", run, lambda: trained)
    assert read_manifests(tmp_path) == {"train": trained}


def test_a_successful_retry_clears_its_failure(tmp_path: Path):
    run = run_context(tmp_path)

    with pytest.raises(ConnectionRefusedError):
        run_phase("score", run, warehouse_down)
    assert read_manifests(tmp_path)["failed"].phase == "score"
    scored = _records(run)["score"]
    run_phase("score", run, lambda: scored)
    assert read_manifests(tmp_path) == {"score": scored}


def test_clearing_a_phase_forgets_its_and_every_later_phases_manifest(tmp_path: Path):
    records = _completed_run(tmp_path)
    seen_during_work = []

    def validate_again():
        seen_during_work.append(set(read_manifests(tmp_path)))
        raise ValueError("column 'tenure' holds text")

    with pytest.raises(PhaseError, match="tenure"):
        run_phase("validate", run_context(tmp_path), validate_again)
    # Gone before the work started, not only after it failed.
    assert seen_during_work == [{"ingest"}]
    left = read_manifests(tmp_path)
    assert set(left) == {"ingest", "failed"}
    assert left["ingest"] == records["ingest"]
    assert left["failed"] == PhaseFailure(
        phase="validate", error_type="ValueError", error="column 'tenure' holds text"
    )
    for phase in PHASES[1:]:
        assert not manifest_path(tmp_path, phase).exists(), phase


def test_rerunning_score_replaces_its_manifest_and_forgets_only_monitors(tmp_path: Path):
    records = _completed_run(tmp_path)
    run = run_context(tmp_path)
    rescored = records["score"].model_copy(update={"rows_written": 599})
    seen_during_work = []

    def score_again():
        seen_during_work.append(set(read_manifests(tmp_path)))
        return rescored

    assert run_phase("score", run, score_again) is rescored
    assert seen_during_work == [set(PHASES) - {"score", "monitor"}]
    assert read_manifests(tmp_path) == {**{p: r for p, r in records.items() if p != "monitor"}, "score": rescored}


def test_a_phase_run_as_several_tasks_records_once_it_finishes(tmp_path: Path):
    records = _completed_run(tmp_path)
    run = run_context(tmp_path)

    assert run_phase("score", run, lambda: ["partition 0", "partition 1"], finishes=False) == [
        "partition 0",
        "partition 1",
    ]
    assert "score" not in read_manifests(tmp_path)  # the plan forgot the stale result, and records none
    with pytest.raises(ConnectionRefusedError):
        run_phase("score", run, warehouse_down, starts=False, finishes=False)
    run_phase("score", run, lambda: "partition 1 staged", starts=False, finishes=False)  # the retry
    assert read_manifests(tmp_path)["failed"].phase == "score"
    run_phase("score", run, lambda: records["score"], starts=False)  # publishing, after every partition
    # The plan forgot monitor's result too: it measured the scores this run replaces.
    assert read_manifests(tmp_path) == {phase: record for phase, record in records.items() if phase != "monitor"}


def test_phase_order_follows_the_lifecycle():
    """``run_phase`` knows the order from the RACI matrix; it must be the lifecycle's."""
    from churn.raci import load_raci

    assert list(load_raci()) == PHASES
