"""MLflow as its users expect: a machine learning experiment, runs named for their date and
Airflow run, inputs logged as datasets, a run's duration that includes model selection,
artifacts under CHURN_HOME only, and plots with proper titles."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from churn.evaluate import evaluate_challenger, evaluation_plots
from churn.settings import QualityGates
from churn.tracking import EXPERIMENT_KIND_TAG, MACHINE_LEARNING_KIND, use_mlflow

# What MLflow's client or server leaves in the folder it runs in when no artifact root is given.
WORKING_DIRECTORY_LITTER = ("mlruns", "mlartifacts", "mlflow.db")


def assert_nothing_written_in(folder: Path) -> None:
    assert not [name for name in WORKING_DIRECTORY_LITTER if (folder / name).exists()], sorted(
        path.name for path in folder.iterdir()
    )


def source_uri(dataset) -> str:
    return json.loads(dataset.source)["uri"]


def test_the_experiment_opens_as_machine_learning_with_every_artifact_under_churn_home(
    settings, churn_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    working = tmp_path / "working_directory"
    working.mkdir()
    monkeypatch.chdir(working)

    experiment_id = use_mlflow(settings)

    client = MlflowClient()
    experiment = client.get_experiment(experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == MACHINE_LEARNING_KIND == "custom_model_development"
    # The store's own Default experiment too: MLflow would have put it in ./mlruns/0.
    for each in client.search_experiments():
        assert each.artifact_location.startswith(settings.mlflow_artifact_root.as_uri()), each
    assert settings.mlflow_artifact_root.is_relative_to(churn_home)
    assert use_mlflow(settings) == experiment_id
    assert_nothing_written_in(working)


def test_an_experiment_made_before_is_marked_but_a_kind_chosen_in_the_ui_stays(settings):
    use_mlflow(settings)
    client = MlflowClient()
    experiment = client.get_experiment_by_name(settings.config.experiment_name)
    client.delete_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG)

    use_mlflow(settings)
    assert client.get_experiment(experiment.experiment_id).tags[EXPERIMENT_KIND_TAG] == MACHINE_LEARNING_KIND

    client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, "genai_development")
    use_mlflow(settings)
    assert client.get_experiment(experiment.experiment_id).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_the_training_run_is_named_for_its_score_date_and_airflow_run(trained_run):
    use_mlflow(trained_run.settings)
    trained = trained_run.trained
    name = mlflow.get_run(trained.mlflow_run_id).info.run_name
    assert name == f"train {trained.run.score_date} · {trained.run.airflow_run_id}"
    assert "2026-11-29" in name and "manual__2026-11-29T02:00:00+00:00" in name


def test_the_training_run_logs_its_inputs_as_datasets_with_source_and_digest(trained_run):
    use_mlflow(trained_run.settings)
    trained, landed = trained_run.trained, trained_run.landed.training
    inputs = mlflow.get_run(trained.mlflow_run_id).inputs.dataset_inputs
    logged = {each.dataset.name: (each.dataset, {tag.key: tag.value for tag in each.tags}) for each in inputs}
    assert set(logged) == {"training snapshot", "training rows", "test rows"}

    snapshot, tags = logged["training snapshot"]
    assert snapshot.digest == landed.sha256[:12]
    assert tags["mlflow.data.context"] == "training"
    assert (tags["sha256"], tags["given_as"]) == (landed.sha256, landed.source)
    assert source_uri(snapshot) == str(landed.path)

    rows, tags = logged["training rows"]
    assert (tags["mlflow.data.context"], tags["rows"]) == ("training", str(trained.train_rows))
    assert source_uri(rows) == str(trained.labelled_path)
    test_rows, tags = logged["test rows"]
    assert (tags["mlflow.data.context"], tags["rows"]) == ("testing", str(trained.test_rows))
    assert source_uri(test_rows) == str(trained.test_path)
    for dataset in (snapshot, rows, test_rows):
        assert dataset.source_type == "local" and len(dataset.digest) == 12
    assert len({rows.digest, test_rows.digest, snapshot.digest}) == 3


def test_the_training_run_starts_before_model_selection(trained_run):
    use_mlflow(trained_run.settings)
    run_id = trained_run.trained.mlflow_run_id
    started = mlflow.get_run(run_id).info.start_time
    [selection] = MlflowClient().get_metric_history(run_id, "selection_seconds")
    # Logged once selection was over: the run had started at least that many seconds earlier.
    assert started <= selection.timestamp - selection.value * 1000
    assert trained_run.trained.selection.seconds > 0


def test_evaluation_writes_nothing_in_the_working_directory(
    trained_run, contract, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    use_mlflow(trained_run.settings)
    gates = QualityGates(min_test_roc_auc=0.5, operating_threshold=0.5)
    evaluate_challenger(trained_run.trained, contract, quality_gates=gates, champion=None, held_back=None, seed=1)
    plots = {
        artifact.path for artifact in MlflowClient().list_artifacts(trained_run.trained.mlflow_run_id, "plots")
    }
    assert "plots/roc_curve.png" in plots
    assert list(tmp_path.iterdir()) == []


def test_plots_have_titles_and_axes_in_words():
    from sklearn.linear_model import LogisticRegression

    generator = np.random.default_rng(0)
    inputs = pd.DataFrame({"tenure": generator.normal(size=400), "monthly_charges": generator.normal(size=400)})
    labels = (inputs["tenure"] + generator.normal(scale=0.5, size=400) > 0).astype(int).to_numpy()
    model = LogisticRegression().fit(inputs, labels)
    figures = evaluation_plots(model, inputs, labels, model.predict_proba(inputs)[:, 1], seed=0)

    axes = {name: figure.axes[0] for name, figure in figures.items()}
    assert {name: axis.get_title() for name, axis in axes.items()} == {
        "roc_curve": "ROC curve",
        "precision_recall_curve": "Precision-recall curve",
        "calibration_curve": "Calibration curve",
        "feature_importance": "Permutation feature importance",
    }
    assert (axes["roc_curve"].get_xlabel(), axes["roc_curve"].get_ylabel()) == (
        "False positive rate",
        "True positive rate",
    )
    assert (axes["precision_recall_curve"].get_xlabel(), axes["precision_recall_curve"].get_ylabel()) == (
        "Recall",
        "Precision",
    )
    assert axes["calibration_curve"].get_xlabel() == "Mean predicted churn probability"
    for axis in axes.values():
        assert "label" not in axis.get_xlabel() + axis.get_ylabel()  # no "(Positive label: 1)"


def test_a_dataset_on_storage_mlflow_does_not_know_keeps_its_uri_and_digest():
    from churn.train import file_dataset

    known = file_dataset("training rows", "s3://aws_default@bucket/churn/runs/training.parquet", "0123456789ab")
    unknown = file_dataset("training rows", "abfs://runs@account/churn/training.parquet", "0123456789ab")
    assert known.to_dict()["source_type"] == "s3"
    assert json.loads(unknown.source.to_json()) == {"tags": {"uri": "abfs://runs@account/churn/training.parquet"}}
    assert unknown.digest == known.digest == "0123456789ab"
