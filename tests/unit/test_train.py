from importlib import resources

import mlflow
import mlflow.sklearn
import numpy as np
import pytest
import yaml

from churn.documents import ConfigurationError, parse_document
from churn.feature import add_derived_features
from churn.handoffs import TrainResult
from churn.model import candidate_pipelines, label_vector, model_inputs
from churn.settings import (
    CandidatesConfig,
    HistGradientBoostingParams,
    LogisticRegressionParams,
    PipelineConfig,
)
from churn.storage import read_parquet
from churn.tracking import use_mlflow
from churn.train import choose_winner, split_train_test, training_fingerprint

BUNDLED_PIPELINE = resources.files("churn").joinpath("pipeline.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def features(snapshots, contract):
    from churn.validate import conform, text_view

    return add_derived_features(conform(text_view(snapshots.training), contract), contract)


def test_model_inputs_have_plain_dtypes_and_no_id_or_label(features, contract):
    inputs = model_inputs(features, contract)
    assert "customerID" not in inputs and "Churn" not in inputs
    assert inputs["tenure"].dtype == "float64"
    assert inputs["Contract"].dtype == object
    assert inputs["TotalCharges"].isna().sum() == features["TotalCharges"].isna().sum()


def test_split_is_stratified_and_reproducible(features, contract):
    train, test = split_train_test(features, contract, 0.2, seed=1)
    again, _ = split_train_test(features, contract, 0.2, seed=1)
    assert train.index.equals(again.index)
    assert len(test) == 600
    assert set(train["customerID"]).isdisjoint(test["customerID"])
    assert abs(label_vector(train, contract).mean() - label_vector(test, contract).mean()) < 0.01


def test_single_class_training_data_is_refused(features, contract):
    with pytest.raises(ValueError, match="single class"):
        split_train_test(features.assign(Churn="No"), contract, 0.2, seed=1)


def _pipeline_config_with_candidates(candidates: dict) -> str:
    document = yaml.safe_load(BUNDLED_PIPELINE)
    document["training"]["candidates"] = candidates
    return yaml.safe_dump(document, sort_keys=False)


def test_the_bundled_pipeline_configures_both_model_families():
    config = parse_document(PipelineConfig, BUNDLED_PIPELINE, "pipeline.yaml")
    assert list(config.training.candidates.configured()) == ["logistic_regression", "hist_gradient_boosting"]


def test_unknown_model_family_is_named_where_the_configuration_is_read():
    document = yaml.safe_load(BUNDLED_PIPELINE)
    document["training"]["candidates"]["random_forest"] = {"n_estimators": 100}
    named = r"pipeline\.yaml: unknown key 'training\.candidates\.random_forest'"
    with pytest.raises(ConfigurationError, match=named):
        parse_document(PipelineConfig, yaml.safe_dump(document, sort_keys=False), "pipeline.yaml")


def test_a_misspelt_hyperparameter_is_named():
    text = _pipeline_config_with_candidates({"hist_gradient_boosting": {"max_iters": 30}})
    named = r"unknown key 'training\.candidates\.hist_gradient_boosting\.max_iters'"
    with pytest.raises(ConfigurationError, match=named):
        parse_document(PipelineConfig, text, "pipeline.yaml")


def test_at_least_one_model_family_must_be_configured():
    with pytest.raises(ConfigurationError, match="configure at least one model family"):
        parse_document(PipelineConfig, _pipeline_config_with_candidates({}), "pipeline.yaml")


def test_candidates_are_the_configured_families_with_their_parameters(contract):
    both = candidate_pipelines(
        contract,
        CandidatesConfig(
            logistic_regression=LogisticRegressionParams(C=0.5),
            hist_gradient_boosting=HistGradientBoostingParams(max_iter=30),
        ),
        seed=1,
    )
    assert list(both) == ["logistic_regression", "hist_gradient_boosting"]
    assert both["logistic_regression"].named_steps["model"].C == 0.5
    assert both["hist_gradient_boosting"].named_steps["model"].max_iter == 30
    assert both["hist_gradient_boosting"].named_steps["model"].random_state == 1
    only_boosting = candidate_pipelines(
        contract, CandidatesConfig(hist_gradient_boosting=HistGradientBoostingParams()), seed=1
    )
    assert list(only_boosting) == ["hist_gradient_boosting"]


def test_winner_has_the_best_mean_auc():
    assert choose_winner({"a": (0.80, 0.01), "b": (0.82, 0.05), "c": (0.81, 0.0)}) == "b"


def test_fingerprint_identifies_rows_contract_config_and_code(features, contract):
    base = training_fingerprint(features, contract, {"seed": 1}, "v1")
    assert base == training_fingerprint(features.copy(), contract, {"seed": 1}, "v1")
    changed_row = features.copy()
    changed_row.loc[changed_row.index[0], "MonthlyCharges"] += 1
    assert training_fingerprint(changed_row, contract, {"seed": 1}, "v1") != base
    assert training_fingerprint(features, contract, {"seed": 2}, "v1") != base
    assert training_fingerprint(features, contract, {"seed": 1}, "v2") != base
    other_contract = contract.model_copy(update={"fingerprint": "another"})
    assert training_fingerprint(features, other_contract, {"seed": 1}, "v1") != base


def test_training_logs_both_candidates_and_a_calibrated_model(trained_run, contract):
    settings, trained = trained_run.settings, trained_run.trained
    assert isinstance(trained, TrainResult)
    assert list(settings.config.training.candidates.configured()) == [
        "logistic_regression",
        "hist_gradient_boosting",
    ]
    use_mlflow(settings)
    tracked = mlflow.get_run(trained.mlflow_run_id).data
    assert {"cv_roc_auc_logistic_regression", "cv_roc_auc_hist_gradient_boosting", "cv_roc_auc"} <= set(
        tracked.metrics
    )
    assert tracked.metrics["cv_roc_auc"] == pytest.approx(trained.cv_roc_auc)
    assert tracked.metrics["cv_roc_auc"] == max(
        tracked.metrics["cv_roc_auc_logistic_regression"], tracked.metrics["cv_roc_auc_hist_gradient_boosting"]
    )
    assert tracked.params["model_family"] == trained.model_family
    assert tracked.params["cv_folds"] == "3"
    assert tracked.tags["training_fingerprint"] == trained.training_fingerprint
    assert tracked.tags["contract_sha256"] == contract.fingerprint
    model = mlflow.sklearn.load_model(trained.model_uri)
    test = read_parquet(trained.test_path)
    probabilities = model.predict_proba(model_inputs(test, contract))[:, 1]
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert trained.test_rows == len(test) == 600
    assert trained.train_rows == trained.train_rows_available == 2400
    # One copy of the winner predicts (refit on all rows), not one per calibration fold.
    assert len(model.calibrated_classifiers_) == 1


def test_thread_pools_are_sized_to_the_worker():
    import os

    from threadpoolctl import threadpool_info

    from churn.model import sized_thread_pools

    with sized_thread_pools():
        pools = {pool["user_api"]: pool["num_threads"] for pool in threadpool_info()}
    assert pools.get("blas", 1) == 1
    assert pools.get("openmp", len(os.sched_getaffinity(0))) == len(os.sched_getaffinity(0))


def test_training_above_the_row_limit_uses_a_stratified_sample(features, contract):
    from churn.train import stratified_sample

    sample = stratified_sample(features, contract, max_rows=1000, seed=1)
    assert len(sample) == 1000 and sample.index.isin(features.index).all()
    assert abs(label_vector(sample, contract).mean() - label_vector(features, contract).mean()) < 0.01
    assert stratified_sample(features, contract, max_rows=len(features), seed=1) is features


def test_training_respects_the_configured_row_limit(trained_run, tmp_path):
    from churn.train import run_train

    settings = trained_run.settings
    limited = settings.overridden(
        config=settings.config.model_copy(
            update={"training": settings.config.training.model_copy(update={"max_rows": 1000})}
        )
    )
    features = trained_run.features
    in_own_folder = features.model_copy(update={"run": features.run.model_copy(update={"run_dir": tmp_path})})
    trained = run_train(in_own_folder, limited)
    assert (trained.train_rows, trained.train_rows_available, trained.test_rows) == (1000, 2400, 600)
    assert mlflow.get_run(trained.mlflow_run_id).data.params["train_rows_available"] == "2400"
