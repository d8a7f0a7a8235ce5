import re
from importlib import resources

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.artifacts import load_dict
from sklearn.model_selection import StratifiedKFold

from churn.documents import ConfigurationError, parse_document
from churn.feature import add_derived_features
from churn.handoffs import TrainResult
from churn.model import MODEL_FAMILIES, candidate_pipelines, label_vector, model_columns, model_inputs
from churn.settings import (
    FAMILY_PARAMS,
    CandidatesConfig,
    ExtraTreesParams,
    HistGradientBoostingParams,
    LogisticRegressionParams,
    LogisticRegressionSpace,
    PipelineConfig,
    RandomForestParams,
    RandomForestSpace,
    SearchConfig,
    SearchSpacesConfig,
    TrainingConfig,
)
from churn.storage import read_parquet
from churn.tracking import use_mlflow
from churn.train import (
    SearchCost,
    affordable_candidates,
    choose_winner,
    configurations_in,
    fit_calibrated,
    plan_refit,
    predicted_search_seconds,
    refit_chosen,
    search_distributions,
    select_model,
    split_train_test,
    training_fingerprint,
)

BUNDLED_PIPELINE = resources.files("churn").joinpath("pipeline.yaml").read_text(encoding="utf-8")
FAMILIES = ["logistic_regression", "hist_gradient_boosting", "random_forest", "extra_trees"]


@pytest.fixture(scope="module")
def features(snapshots, contract):
    from churn.validate import conform, text_view

    return add_derived_features(conform(text_view(snapshots.training), contract), contract)


@pytest.fixture(scope="module")
def small_training(features, contract):
    """1,200 of the training rows as the model sees them, for selections that must be quick."""
    rows = features.sample(n=1200, random_state=3)
    return model_inputs(rows, contract), label_vector(rows, contract)


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


def _parse_with(change) -> PipelineConfig:
    document = yaml.safe_load(BUNDLED_PIPELINE)
    change(document["training"])
    return parse_document(PipelineConfig, yaml.safe_dump(document, sort_keys=False), "pipeline.yaml")


def test_the_bundled_pipeline_configures_and_searches_every_model_family():
    config = parse_document(PipelineConfig, BUNDLED_PIPELINE, "pipeline.yaml")
    assert list(config.training.candidates.configured()) == FAMILIES
    assert list(config.training.search.spaces.configured()) == FAMILIES
    assert config.training.search.time_budget_seconds > 0


def test_every_family_has_parameters_a_pipeline_and_a_search_space():
    assert list(MODEL_FAMILIES) == list(FAMILY_PARAMS) == FAMILIES
    assert list(CandidatesConfig.model_fields) == list(SearchSpacesConfig.model_fields) == FAMILIES


def test_unknown_model_family_is_named_where_the_configuration_is_read():
    named = r"pipeline\.yaml: unknown key 'training\.candidates\.xgboost'"
    with pytest.raises(ConfigurationError, match=named):
        _parse_with(lambda training: training["candidates"].update(xgboost={"n_estimators": 100}))


def test_a_misspelt_hyperparameter_is_named():
    named = r"unknown key 'training\.candidates\.hist_gradient_boosting\.max_iters'"
    with pytest.raises(ConfigurationError, match=named):
        _parse_with(lambda training: training["candidates"].update(hist_gradient_boosting={"max_iters": 30}))


def test_at_least_one_model_family_must_be_configured():
    def no_families(training):
        training["candidates"] = {}
        del training["search"]

    with pytest.raises(ConfigurationError, match="configure at least one model family"):
        _parse_with(no_families)


def test_a_search_space_naming_a_parameter_the_family_does_not_take_is_refused():
    named = r"unknown key 'training\.search\.spaces\.random_forest\.max_dept'"
    with pytest.raises(ConfigurationError, match=named):
        _parse_with(lambda training: training["search"]["spaces"]["random_forest"].update(max_dept=[4, 8]))


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"n_estimators": [100, 0]}, "random_forest.n_estimators.values.1: Input should be greater than 0"),
        ({"max_depth": {"low": 16, "high": 4}}, "random_forest.max_depth.range: low (16) must be below high (4)"),
        ({"max_samples": {"low": 0.5, "high": 1.5}}, "random_forest.max_samples.range.high"),
        ({"max_features": ["cube"]}, "random_forest.max_features.values.0"),
        ({"class_weight": {"low": 0, "high": 1}}, "random_forest.class_weight: Input should be a valid list"),
        ({"min_samples_leaf": []}, "random_forest.min_samples_leaf.values: List should have at least 1 item"),
        ({"n_estimators": 100}, "random_forest.n_estimators.values: Input should be a valid list"),
    ],
)
def test_search_space_values_are_checked_as_the_parameter_checks_them(values, named):
    with pytest.raises(ConfigurationError, match=re.escape(f"training.search.spaces.{named}")):
        _parse_with(lambda training: training["search"]["spaces"]["random_forest"].update(values))


def test_a_log_range_must_start_above_zero():
    with pytest.raises(ConfigurationError, match="a log range needs low above 0"):
        _parse_with(
            lambda training: training["search"]["spaces"]["hist_gradient_boosting"].update(
                l2_regularization={"low": 0.0, "high": 1.0, "log": True}
            )
        )


def test_a_search_space_for_a_family_that_is_not_configured_is_refused():
    with pytest.raises(ConfigurationError, match=r"a search space for a family training\.candidates does not"):
        _parse_with(lambda training: training["candidates"].pop("extra_trees"))


def test_the_time_budget_must_be_positive():
    with pytest.raises(ConfigurationError, match=r"training\.search\.time_budget_seconds"):
        _parse_with(lambda training: training["search"].update(time_budget_seconds=0))


def test_search_distributions_follow_the_space():
    distributions = search_distributions(
        RandomForestSpace(
            n_estimators=[100, 200], max_depth={"low": 4, "high": 8}, max_samples={"low": 0.3, "high": 0.9}
        )
    )
    assert distributions["model__n_estimators"] == [100, 200]
    assert (distributions["model__max_depth"].a, distributions["model__max_depth"].b) == (4, 8)  # both included
    drawn = distributions["model__max_samples"].rvs(size=1000, random_state=1)
    assert drawn.min() >= 0.3 and drawn.max() <= 0.9
    logarithmic = search_distributions(LogisticRegressionSpace(C={"low": 0.01, "high": 100.0, "log": True}))
    assert np.median(logarithmic["model__C"].rvs(size=2001, random_state=1)) == pytest.approx(1.0, rel=0.3)
    assert set(search_distributions(RandomForestSpace())) == set()


def test_a_space_counts_its_configurations():
    assert configurations_in(RandomForestSpace(n_estimators=[100, 200], max_depth={"low": 4, "high": 8})) == 10
    assert configurations_in(LogisticRegressionSpace(C={"low": 0.1, "high": 1.0})) == float("inf")


def test_candidates_are_the_configured_families_with_their_parameters(contract):
    every = candidate_pipelines(
        contract,
        CandidatesConfig(
            logistic_regression=LogisticRegressionParams(C=0.5),
            hist_gradient_boosting=HistGradientBoostingParams(max_iter=30),
            random_forest=RandomForestParams(n_estimators=40, max_samples=0.5),
            extra_trees=ExtraTreesParams(max_depth=6),
        ),
        seed=1,
    )
    assert list(every) == FAMILIES
    assert every["logistic_regression"].named_steps["model"].C == 0.5
    assert every["hist_gradient_boosting"].named_steps["model"].max_iter == 30
    assert every["hist_gradient_boosting"].named_steps["model"].random_state == 1
    forest, extra = every["random_forest"].named_steps["model"], every["extra_trees"].named_steps["model"]
    assert (forest.n_estimators, forest.max_samples, forest.random_state, forest.n_jobs) == (40, 0.5, 1, -1)
    assert (extra.max_depth, extra.random_state) == (6, 1)
    only_boosting = candidate_pipelines(
        contract, CandidatesConfig(hist_gradient_boosting=HistGradientBoostingParams()), seed=1
    )
    assert list(only_boosting) == ["hist_gradient_boosting"]


def test_winner_has_the_best_mean_auc():
    assert choose_winner({"a": (0.80, 0.01), "b": (0.82, 0.05), "c": (0.81, 0.0)}) == "b"
    assert choose_winner({"simple": (0.82, 0.01), "complex": (0.82, 0.0)}) == "simple"


def test_the_plan_affords_fewer_configurations_as_the_budget_shrinks():
    # Where a fit on a sample costs what one on all rows does, a search of 27 cross-validates
    # 27 + 9 + 3 + 1 configurations at the cost of one on all rows, then its best again.
    flat = SearchCost(rows=2700, seconds=1.0, sample_rows=100, sample_seconds=1.0)
    assert predicted_search_seconds(27, flat) == 41
    assert affordable_candidates(27, float("inf"), flat, seconds_left=41) == 27
    assert affordable_candidates(27, float("inf"), flat, seconds_left=40) == 9
    assert affordable_candidates(27, float("inf"), flat, seconds_left=5) == 3
    assert affordable_candidates(27, float("inf"), flat, seconds_left=4.9) == 0
    assert affordable_candidates(27, float("inf"), flat, seconds_left=-3) == 0
    # Never more configurations than the space holds.
    assert affordable_candidates(27, 6, flat, seconds_left=1000) == 6


def test_the_plan_follows_the_measured_cost_of_small_samples():
    # Where cost is proportional to the rows, each round costs what one configuration on all rows does.
    proportional = SearchCost(rows=2700, seconds=1.0, sample_rows=100, sample_seconds=100 / 2700)
    assert proportional.seconds_for(100) == pytest.approx(100 / 2700)
    assert proportional.seconds_for(1400) == pytest.approx(0.5 + 50 / 2700)
    assert proportional.seconds_for(50) == proportional.seconds_for(100)  # never below what was measured
    assert predicted_search_seconds(27, proportional) == pytest.approx(5.0)
    assert affordable_candidates(27, float("inf"), proportional, seconds_left=5.01) == 27


def _training(spaces: SearchSpacesConfig | None, budget: float = 600.0) -> TrainingConfig:
    return TrainingConfig(
        cv_folds=3,
        seed=5,
        calibration="sigmoid",
        candidates=CandidatesConfig(
            logistic_regression=LogisticRegressionParams(),
            random_forest=RandomForestParams(n_estimators=15, max_depth=5),
        ),
        search=SearchConfig(time_budget_seconds=budget, max_candidates=3, spaces=spaces) if spaces else None,
    )


SMALL_SPACES = SearchSpacesConfig(
    logistic_regression=LogisticRegressionSpace(C={"low": 0.001, "high": 0.1, "log": True}),
    random_forest=RandomForestSpace(min_samples_leaf=[1, 20, 60]),
)


def test_a_tiny_budget_keeps_the_configured_values_and_says_so(small_training, contract):
    inputs, labels = small_training
    tiny = _training(SearchSpacesConfig(random_forest=RandomForestSpace(min_samples_leaf=[1, 20, 60])), 1e-3)
    selection = select_model(inputs, labels, contract, tiny)
    logistic, forest = selection.record.families
    assert (logistic.search, forest.search) == ("no_space", "budget_spent")
    assert logistic.configurations_tried == forest.configurations_tried == 0
    assert selection.params == tiny.candidates.configured()
    assert (forest.cv_roc_auc, forest.cv_roc_auc_std) == (
        forest.configured_cv_roc_auc,
        forest.configured_cv_roc_auc_std,
    )
    assert selection.tried == {}
    assert selection.record.time_budget_seconds == 1e-3 and selection.record.seconds > 1e-3


def test_selection_chooses_by_cross_validation_on_the_rows_it_is_given(small_training, contract):
    inputs, labels = small_training
    training = _training(SMALL_SPACES)
    selection = select_model(inputs, labels, contract, training)
    record = selection.record
    assert (record.cv_rows, record.cv_folds) == (1200, 3)
    assert [family.search for family in record.families] == ["searched", "searched"]
    assert {family: len(tried) for family, tried in selection.tried.items()} == {
        "logistic_regression": 4,  # 3 configurations, the best of them again on all rows
        "random_forest": 4,
    }
    scores = {family.family: (family.cv_roc_auc, family.cv_roc_auc_std) for family in record.families}
    assert selection.winner == choose_winner(scores)
    # A family keeps a searched configuration only when it beats its configured one.
    for family in record.families:
        assert family.cv_roc_auc >= family.configured_cv_roc_auc
        assert family.params == selection.params[family.family].model_dump(mode="json")
    # The recorded score is that of the chosen configuration on the same folds.
    folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=5)
    from churn.model import family_pipeline
    from churn.train import cross_validated_auc

    chosen = record.family(selection.winner)
    again = cross_validated_auc(
        family_pipeline(selection.winner, contract, selection.params[selection.winner], 5), inputs, labels, folds
    )
    assert again == pytest.approx((chosen.cv_roc_auc, chosen.cv_roc_auc_std))
    # The search is deterministic given the seed.
    repeated = select_model(inputs, labels, contract, training)
    assert repeated.params == selection.params and repeated.tried == selection.tried
    assert (
        repeated.record.search_spaces
        == record.search_spaces
        == {
            "logistic_regression": {"C": {"low": 0.001, "high": 0.1, "log": True}},
            "random_forest": {"min_samples_leaf": [1, 20, 60]},
        }
    )


def test_without_a_search_the_families_compete_with_their_configured_values(small_training, contract):
    inputs, labels = small_training
    selection = select_model(inputs, labels, contract, _training(None))
    assert [family.search for family in selection.record.families] == ["no_space", "no_space"]
    assert selection.record.time_budget_seconds is None and selection.record.search_spaces == {}


def test_calibration_keeps_one_copy_of_every_family(small_training, contract):
    inputs, labels = small_training
    small = CandidatesConfig(
        logistic_regression=LogisticRegressionParams(),
        hist_gradient_boosting=HistGradientBoostingParams(max_iter=20),
        random_forest=RandomForestParams(n_estimators=10),
        extra_trees=ExtraTreesParams(n_estimators=10),
    )
    for family, pipeline in candidate_pipelines(contract, small, seed=1).items():
        calibrated = fit_calibrated(pipeline, inputs, labels, "sigmoid", 3, 1)
        # Scoring runs the one refit copy of the family and a sigmoid, never one copy per fold.
        assert len(calibrated.calibrated_classifiers_) == 1, family
        base = calibrated.calibrated_classifiers_[0].estimator
        assert base.named_steps["model"].__class__ is pipeline.named_steps["model"].__class__


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


def test_training_logs_every_candidate_its_search_and_a_calibrated_model(trained_run, contract):
    settings, trained = trained_run.settings, trained_run.trained
    assert isinstance(trained, TrainResult)
    assert list(settings.config.training.candidates.configured()) == FAMILIES
    use_mlflow(settings)
    tracked = mlflow.get_run(trained.mlflow_run_id).data
    for family in FAMILIES:
        for metric in ("cv_roc_auc", "cv_roc_auc_std", "cv_roc_auc_configured", "configurations_tried"):
            assert f"{metric}_{family}" in tracked.metrics
        assert tracked.tags[f"search.{family}"] == "searched"
        assert tracked.metrics[f"configurations_tried_{family}"] == 3
    assert tracked.metrics["cv_roc_auc"] == pytest.approx(trained.cv_roc_auc)
    assert tracked.metrics["cv_roc_auc"] == max(tracked.metrics[f"cv_roc_auc_{family}"] for family in FAMILIES)
    assert tracked.metrics["selection_seconds"] == pytest.approx(trained.selection.seconds)
    assert tracked.params["model_family"] == trained.model_family
    assert tracked.params["cv_folds"] == "3"
    assert tracked.params["time_budget_seconds"] == "3600.0"
    assert tracked.params["hist_gradient_boosting.max_leaf_nodes"] in {"7", "15", "31"}
    assert tracked.tags["training_fingerprint"] == trained.training_fingerprint
    assert tracked.tags["contract_sha256"] == contract.fingerprint
    recorded = load_dict(f"runs:/{trained.mlflow_run_id}/model_selection.json")
    assert recorded["search_spaces"]["random_forest"] == {"min_samples_leaf": [5, 10, 40]}
    assert recorded["time_budget_seconds"] == 3600.0
    assert {len(recorded["configurations_tried"][family]) for family in FAMILIES} == {4}
    assert [family["family"] for family in recorded["families"]] == FAMILIES
    # Chosen on the training split only: the test rows are never cross-validated.
    assert trained.selection.cv_rows == trained.train_rows == 2400
    model = mlflow.sklearn.load_model(trained.model_uri)
    test = read_parquet(trained.test_path)
    probabilities = model.predict_proba(model_inputs(test, contract))[:, 1]
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    assert trained.test_rows == len(test) == 600
    assert trained.train_rows == trained.train_rows_available == 2400
    assert len(read_parquet(trained.labelled_path)) == 3000
    # One copy of the winner predicts (refit on all rows), not one per calibration fold.
    assert len(model.calibrated_classifiers_) == 1


def test_the_refit_learns_from_every_labelled_row(trained_run, contract):
    trained, training = trained_run.trained, trained_run.settings.config.training
    refit = plan_refit(trained, contract, training)
    assert (len(refit.rows), refit.rows_available) == (3000, 3000)
    # Refit logistic regression: its imputer's medians are those of all 3,000 rows, not of the 2,400.
    as_logistic = trained.model_copy(update={"model_family": "logistic_regression"})
    model = refit_chosen(as_logistic, refit, contract, training)
    pipeline = model.calibrated_classifiers_[0].estimator
    medians = pipeline.named_steps["preprocess"].named_transformers_["numeric"].named_steps["impute"].statistics_
    numeric, _ = model_columns(contract)
    every = model_inputs(read_parquet(trained.labelled_path), contract)[numeric].median().to_numpy()
    np.testing.assert_allclose(medians, every)
    split = trained_run.settings.config.split
    train, _ = split_train_test(read_parquet(trained.labelled_path), contract, split.test_fraction, split.seed)
    assert not np.allclose(medians, model_inputs(train, contract)[numeric].median().to_numpy())
    assert trained.selection.family("logistic_regression").params["C"] == pipeline.named_steps["model"].C


def test_the_refit_fingerprint_identifies_its_rows_and_the_chosen_configuration(trained_run, contract):
    trained, training = trained_run.trained, trained_run.settings.config.training
    refit = plan_refit(trained, contract, training)
    assert plan_refit(trained, contract, training).fingerprint == refit.fingerprint
    assert refit.fingerprint != trained.training_fingerprint
    other_family = next(family for family in FAMILIES if family != trained.model_family)
    assert plan_refit(
        trained.model_copy(update={"model_family": other_family}), contract, training
    ).fingerprint != (refit.fingerprint)
    sampled = plan_refit(trained, contract, training.model_copy(update={"max_rows": 1000}))
    assert (len(sampled.rows), sampled.rows_available) == (1000, 3000)
    assert sampled.fingerprint != refit.fingerprint


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
            # No search: the row limit is what is tested here.
            update={"training": settings.config.training.model_copy(update={"max_rows": 1000, "search": None})}
        )
    )
    features = trained_run.features
    in_own_folder = features.model_copy(update={"run": features.run.model_copy(update={"run_dir": tmp_path})})
    trained = run_train(in_own_folder, limited)
    assert (trained.train_rows, trained.train_rows_available, trained.test_rows) == (1000, 2400, 600)
    assert trained.selection.cv_rows == 1000
    assert mlflow.get_run(trained.mlflow_run_id).data.params["train_rows_available"] == "2400"
