import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest

from churn.feature import add_derived_features
from churn.tracking import use_mlflow
from churn.train import (
    candidate_pipelines,
    choose_winner,
    label_vector,
    model_inputs,
    split_train_test,
    training_fingerprint,
)


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


def test_unknown_model_family_is_named(contract):
    with pytest.raises(ValueError, match="random_forest"):
        candidate_pipelines(contract, {"random_forest": {}}, seed=1)


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


def test_training_logs_both_candidates_and_a_calibrated_model(trained_run, contract):
    run, settings = trained_run
    use_mlflow(settings)
    trained = run["train"]
    tracked = mlflow.get_run(trained["mlflow_run_id"]).data
    assert {"cv_roc_auc_logistic_regression", "cv_roc_auc_hist_gradient_boosting", "cv_roc_auc"} <= set(
        tracked.metrics
    )
    assert tracked.params["model_family"] == trained["model_family"]
    assert tracked.tags["training_fingerprint"] == trained["training_fingerprint"]
    assert tracked.tags["contract_sha256"] == contract.fingerprint
    model = mlflow.sklearn.load_model(trained["model_uri"])
    test = pd.read_parquet(trained["test_path"])
    probabilities = model.predict_proba(model_inputs(test, contract))[:, 1]
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert trained["test_rows"] == len(test) == 600
