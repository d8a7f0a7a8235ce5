import pandas as pd
import pytest

from churn.feature import add_derived_features, band, category_values, count_equal, ratio, unseen_categories
from churn.handoffs import FeatureResult
from churn.model import model_columns
from churn.storage import read_parquet


def test_band_labels_cover_every_value_with_inclusive_upper_edges():
    banded = band(pd.Series([0, 12, 13, 24, 25, 72]), [12, 24])
    assert banded.tolist() == ["<=12", "<=12", "13-24", "13-24", ">24", ">24"]


def test_ratio_falls_back_where_undefined():
    result = ratio(pd.Series([100.0, None, 50.0]), pd.Series([10, 0, 0]), fallback=pd.Series([1.0, 2.0, 3.0]))
    assert result.tolist() == [10.0, 2.0, 3.0]


def test_ratio_without_fallback_leaves_undefined_missing():
    assert ratio(pd.Series([1.0]), pd.Series([0])).isna().all()


def test_count_equal_counts_matching_columns():
    frame = pd.DataFrame({"a": ["Yes", "No"], "b": ["Yes", "Yes"], "c": ["No internet service", "No"]})
    assert count_equal(frame, ["a", "b", "c"], "Yes").tolist() == [2, 1]


def test_derived_features_are_added_without_touching_the_input(snapshots, contract):
    original = snapshots.training.copy()
    featured = add_derived_features(snapshots.training, contract)
    assert snapshots.training.equals(original)
    assert {"tenure_band", "charge_per_tenure_month", "subscribed_services"} <= set(featured.columns)
    zero_tenure = featured[featured["tenure"] == 0]
    assert (zero_tenure["charge_per_tenure_month"] == zero_tenure["MonthlyCharges"]).all()


def test_training_and_scoring_rows_get_identical_features(snapshots, contract):
    rows = snapshots.training.head(100)
    as_training = add_derived_features(rows, contract)
    as_scoring = add_derived_features(rows.drop(columns=["Churn"]), contract)
    pd.testing.assert_frame_equal(as_training.drop(columns=["Churn"]), as_scoring)


def test_missing_input_column_is_named(snapshots, contract):
    with pytest.raises(KeyError, match="tenure"):
        add_derived_features(snapshots.training.drop(columns=["tenure"]), contract)


def test_model_columns_split_numbers_from_categories(contract):
    numeric, categorical = model_columns(contract)
    assert "tenure" in numeric and "charge_per_tenure_month" in numeric and "subscribed_services" in numeric
    assert "Contract" in categorical and "tenure_band" in categorical
    assert "customerID" not in numeric + categorical and "Churn" not in numeric + categorical


def test_unseen_categories_are_reported_per_column():
    training = pd.DataFrame({"Contract": ["One year", "Two year"], "PaymentMethod": ["Mailed check", None]})
    scoring = pd.DataFrame({"Contract": ["One year", "Monthly", "Weekly"], "PaymentMethod": [None, None, None]})
    assert unseen_categories(
        category_values(training, ["Contract", "PaymentMethod"]),
        category_values(scoring, ["Contract", "PaymentMethod"]),
    ) == {"Contract": ["Monthly", "Weekly"]}


def test_run_feature_writes_both_feature_tables_with_the_contracts_features(trained_run, contract):
    features = trained_run.features
    assert isinstance(features, FeatureResult)
    assert features.run == trained_run.validated.run
    assert features.derived_features == [feature.name for feature in contract.derived_features]
    training, scoring = read_parquet(features.training_path), read_parquet(features.scoring_path)
    assert len(training) == trained_run.validated.training.rows == 3000
    assert len(scoring) == trained_run.validated.scoring.rows == 600
    assert set(features.derived_features) <= set(training.columns) & set(scoring.columns)
    assert "Churn" in training and "Churn" not in scoring
    assert features.unseen_categories == {}


def test_feature_tables_are_built_batch_by_batch_as_in_one_piece(tmp_path, snapshots, contract, monkeypatch):
    import pyarrow.parquet as pq

    import churn.feature
    import churn.storage
    from churn.feature import add_derived_features, build_feature_table
    from churn.storage import write_parquet_atomically
    from churn.validate import conform, text_view

    # Row groups (and so batches) of 7 rows: 600 customers in 86 of them.
    monkeypatch.setattr(churn.storage, "PARQUET_ROW_GROUP_ROWS", 7)
    typed = conform(text_view(snapshots.scoring), contract)
    source = write_parquet_atomically(typed, tmp_path / "validated.parquet")
    batches = []
    real_add = churn.feature.add_derived_features
    monkeypatch.setattr(
        churn.feature, "add_derived_features", lambda frame, c: batches.append(len(frame)) or real_add(frame, c)
    )
    seen = build_feature_table(source, tmp_path / "features.parquet", contract)
    monkeypatch.undo()
    assert len(batches) == 86 and max(batches) == 7
    assert pq.ParquetFile(tmp_path / "features.parquet").metadata.num_row_groups == 86
    built = pd.read_parquet(tmp_path / "features.parquet")
    pd.testing.assert_frame_equal(built, add_derived_features(read_parquet(source), contract))
    assert seen["Contract"] == set(typed["Contract"].dropna())
