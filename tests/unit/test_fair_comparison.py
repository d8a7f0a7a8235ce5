"""The challenger and the champion are compared only on test rows neither was trained on, and
only when those rows hold enough churned and retained customers to trust the figure.

The issue's scenario is rebuilt with real models on generated data: a gradient-boosting
champion fitted on most of the challenger's test customers scores them almost perfectly and
would beat the challenger there, while on customers it never saw the challenger is better.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from churn.evaluate import (
    Comparison,
    champion_metrics_on,
    decide_promotion,
    evaluate_challenger,
    too_few_to_compare,
    too_few_to_trust,
    unseen_by_champion,
)
from churn.model import family_pipeline, label_vector, model_inputs
from churn.settings import HistGradientBoostingParams, QualityGates
from churn.storage import read_parquet, write_parquet_atomically
from churn.tracking import CONTRACT_TAG, use_mlflow
from churn.train import file_dataset, rows_digest

GATES = QualityGates(min_test_roc_auc=0.7, operating_threshold=0.5)


def test_only_test_customers_the_champion_never_trained_on_are_compared():
    test_ids = pd.Series(["a", "b", "c", "d"], dtype="string")
    trained_on = pd.Series(["b", "d", "z", None], dtype="string")
    assert unseen_by_champion(test_ids, trained_on).tolist() == [True, False, True, False]
    assert unseen_by_champion(test_ids, pd.Series([], dtype="string")).all()


def test_a_comparison_on_too_few_churners_or_retained_customers_is_refused():
    two_churners = np.array([1, 1] + [0] * 200)
    refused = too_few_to_compare(two_churners, excluded=450, min_positives=30, min_negatives=30)
    assert refused is not None
    for said in ("only 202 test rows (2 churned, 200 not)", "450 of the test rows", "at least 30 churned"):
        assert said in refused
    assert "the champion is kept" in refused
    assert too_few_to_compare(np.array([1] * 200 + [0] * 5), 0, 30, 30) is not None
    assert too_few_to_compare(np.array([1] * 30 + [0] * 30), 0, 30, 30) is None


def test_a_refused_comparison_keeps_the_champion_however_good_the_challenger():
    decision = decide_promotion(0.95, None, min_auc=0.70, unfair="only 3 churned")
    assert (decision.promote, decision.reason) == (False, "only 3 churned")
    # The floor still comes first, and a held-back run says why it is held back.
    assert "below the quality floor" in decide_promotion(0.6, None, min_auc=0.7, unfair="x").reason
    assert decide_promotion(0.95, None, min_auc=0.7, held_back="rerun", unfair="x").reason == "rerun"


def test_a_test_split_with_too_few_of_a_class_promotes_nothing_not_even_a_first_model():
    two_churners = np.array([1, 1] + [0] * 198)
    untrusted = too_few_to_trust(two_churners, min_positives=30, min_negatives=30)
    assert untrusted is not None
    assert "only 2 churned and 198 retained customers" in untrusted and "at least 30 and 30" in untrusted
    # No champion: the floor alone would have promoted this challenger.
    assert decide_promotion(0.95, None, min_auc=0.7).promote
    decision = decide_promotion(0.95, None, min_auc=0.7, untrusted=untrusted)
    assert (decision.promote, decision.reason) == (False, untrusted)
    assert too_few_to_trust(np.array([0] * 29 + [1] * 100), 30, 30) is not None
    assert too_few_to_trust(np.array([1] * 30 + [0] * 30), 30, 30) is None


def test_the_decision_names_the_comparison_rows_and_both_aucs():
    comparison = Comparison(challenger_auc=0.84, champion_auc=0.82, rows=180, positives=47)
    decision = decide_promotion(0.83, None, min_auc=0.7, comparison=comparison)
    assert decision.promote
    assert decision.reason == (
        "challenger 0.8400 >= champion 0.8200 on 180 test rows (47 churned) neither model was trained on"
    )
    worse = decide_promotion(0.83, None, min_auc=0.7, comparison=Comparison(0.80, 0.82, 180, 47))
    assert not worse.promote and "0.8000 < champion 0.8200 on 180 test rows" in worse.reason


@dataclass(frozen=True)
class Champion:
    version: object
    training_path: object


def register_champion(trained_run, contract, training: pd.DataFrame) -> Champion:
    """A gradient-boosting champion fitted on ``training``, registered with a training run
    that logs its rows as the pipeline's training does (its "training rows" dataset)."""
    run = trained_run.trained.run
    path = write_parquet_atomically(training, run.run_dir / "champion" / f"{uuid.uuid4().hex}.parquet")
    # Deep trees and many rounds: a model that memorises the customers it was fitted on.
    params = HistGradientBoostingParams(learning_rate=0.3, max_iter=300, max_leaf_nodes=None, min_samples_leaf=1)
    model = family_pipeline("hist_gradient_boosting", contract, params, seed=3)
    model.fit(model_inputs(training, contract), label_vector(training, contract))
    name = f"churn-fair-{uuid.uuid4().hex[:8]}"
    with mlflow.start_run(run_name="champion") as tracked:
        mlflow.log_inputs(
            datasets=[file_dataset("training rows", str(path), rows_digest(training))],
            contexts=["training"],
            tags_list=[{"rows": str(len(training))}],
        )
        uri = mlflow.sklearn.log_model(model, name="model", serialization_format="cloudpickle").model_uri
    MlflowClient().create_registered_model(name)
    registered = mlflow.register_model(uri, name, tags={CONTRACT_TAG: contract.fingerprint})
    assert tracked.info.run_id
    return Champion(MlflowClient().get_model_version(name, registered.version), path)


@pytest.fixture
def other_customers(trained_run, contract) -> pd.DataFrame:
    """Labelled customers outside the challenger's test split (from its training split)."""
    trained = trained_run.trained
    labelled, test = read_parquet(trained.labelled_path), read_parquet(trained.test_path)
    outside = labelled[~contract.customer_ids(labelled).isin(set(contract.customer_ids(test)))]
    return outside.sample(n=min(len(outside), len(test)), random_state=6)


def test_a_champion_trained_on_the_challengers_test_customers_does_not_win_on_them(
    trained_run, contract, other_customers
):
    trained = trained_run.trained
    use_mlflow(trained_run.settings)
    test = read_parquet(trained.test_path).reset_index(drop=True)
    # 71% of the challenger's test customers, as in the issue, and as many others.
    overlap = test.sample(frac=0.71, random_state=5)
    champion = register_champion(trained_run, contract, pd.concat([overlap, other_customers], ignore_index=True))

    inputs, labels = model_inputs(test, contract), label_vector(test, contract)
    challenger = mlflow.sklearn.load_model(trained.model_uri)
    from sklearn.metrics import roc_auc_score

    # The premise: on all the test rows, most of which it memorised, the champion wins.
    challenger_on_all = roc_auc_score(labels, challenger.predict_proba(inputs)[:, 1])
    assert champion_metrics_on(champion.version, inputs, labels, contract, 0.5)["test_roc_auc"] > challenger_on_all

    result = evaluate_challenger(
        trained, contract, quality_gates=GATES, champion=champion.version, held_back=None, seed=1
    )
    unseen = len(test) - len(overlap)
    assert result.comparison_rows == unseen
    assert result.comparison_positives == int(label_vector(test.drop(overlap.index), contract).sum())
    assert result.challenger_comparison_roc_auc > result.champion_test_roc_auc
    assert result.promote is True
    assert f"on {unseen} test rows ({result.comparison_positives} churned) neither model was trained on" in (
        result.reason
    )
    tracked = mlflow.get_run(trained.mlflow_run_id).data.metrics
    assert tracked["comparison_rows"] == unseen
    assert tracked["comparison_positives"] == result.comparison_positives
    assert tracked["champion_test_roc_auc"] == pytest.approx(result.champion_test_roc_auc)
    assert tracked["challenger_comparison_roc_auc"] == pytest.approx(result.challenger_comparison_roc_auc)
    # Every metric of both models, measured on exactly the rows the champion never saw.
    unseen_rows = ~test.index.isin(overlap.index)
    on_unseen = champion_metrics_on(
        champion.version, inputs[unseen_rows], labels[unseen_rows], contract, GATES.operating_threshold
    )
    assert result.champion_comparison_metrics == pytest.approx(on_unseen)
    assert set(result.challenger_comparison_metrics) == set(result.metrics) == set(on_unseen)
    assert result.champion_comparison_metrics["test_roc_auc"] == result.champion_test_roc_auc
    assert result.challenger_comparison_metrics["test_roc_auc"] == result.challenger_comparison_roc_auc
    assert tracked["champion_test_brier"] == pytest.approx(on_unseen["test_brier"])
    assert tracked["challenger_comparison_brier"] == pytest.approx(
        result.challenger_comparison_metrics["test_brier"]
    )


def test_a_champion_trained_on_nearly_every_test_customer_leaves_too_few_to_compare(trained_run, contract):
    trained = trained_run.trained
    use_mlflow(trained_run.settings)
    test = read_parquet(trained.test_path).reset_index(drop=True)
    champion = register_champion(trained_run, contract, test.iloc[: len(test) - 20])

    result = evaluate_challenger(
        trained, contract, quality_gates=GATES, champion=champion.version, held_back=None, seed=1
    )
    assert result.promote is False
    assert "only 20 test rows" in result.reason and "the champion is kept" in result.reason
    assert result.champion_test_roc_auc is None and result.comparison_rows is None
    tags = mlflow.get_run(trained.mlflow_run_id).data.tags
    assert (tags["promotion_decision"], tags["promotion_reason"]) == ("keep_champion", result.reason)


def test_a_champion_whose_training_customers_are_gone_is_not_compared_and_stays(trained_run, contract):
    trained = trained_run.trained
    use_mlflow(trained_run.settings)
    test = read_parquet(trained.test_path).reset_index(drop=True)
    champion = register_champion(trained_run, contract, test.iloc[:100])
    champion.training_path.unlink()

    result = evaluate_challenger(
        trained, contract, quality_gates=GATES, champion=champion.version, held_back=None, seed=1
    )
    assert result.promote is False
    assert f"the customers champion version {champion.version.version} was trained on cannot be found" in (
        result.reason
    )
    assert "is gone from" in result.reason and "the champion is kept" in result.reason
