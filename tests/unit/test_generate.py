from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churn.generate import COLUMN_ORDER, DEFECTS, main, make_snapshots, read_snapshot


def test_training_snapshot_has_the_public_schema_and_a_label(snapshots):
    assert list(snapshots.training.columns) == [*COLUMN_ORDER, "Churn"]
    assert list(snapshots.scoring.columns) == COLUMN_ORDER


def test_values_stay_inside_the_contract(snapshots, contract):
    for name, spec in contract.columns.items():
        column = snapshots.training[name]
        if spec.values is not None:
            assert set(column.dropna()) <= set(spec.values), name
        if spec.min is not None:
            assert column.dropna().between(spec.min, spec.max).all(), name


def test_churn_rate_is_about_a_quarter():
    big = make_snapshots(20000, 10, seed=3)
    assert 0.24 <= (big.training["Churn"] == "Yes").mean() <= 0.29


def test_total_charges_is_blank_exactly_at_zero_tenure():
    big = make_snapshots(20000, 10, seed=3)
    blank = big.training["TotalCharges"].isna()
    assert blank.any()
    assert (blank == (big.training["tenure"] == 0)).all()


def test_ids_are_unique_across_both_snapshots(snapshots):
    ids = pd.concat([snapshots.training["customerID"], snapshots.scoring["customerID"]])
    assert ids.is_unique
    assert ids.str.fullmatch(r"\d{4}-[A-Z]{5}").all()


def test_same_seed_same_data_other_seed_other_data():
    assert make_snapshots(500, 50, seed=1).training.equals(make_snapshots(500, 50, seed=1).training)
    assert not make_snapshots(500, 50, seed=1).training.equals(make_snapshots(500, 50, seed=2).training)


def test_true_probabilities_explain_the_labels(snapshots):
    truth = snapshots.truth.set_index("customerID")["true_churn_probability"]
    assert truth.between(0, 1).all()
    labelled = snapshots.training.set_index("customerID")
    churners = truth[labelled.index][labelled["Churn"] == "Yes"].mean()
    stayers = truth[labelled.index][labelled["Churn"] == "No"].mean()
    assert churners > stayers + 0.1


def test_drift_shifts_the_scoring_population():
    steady = make_snapshots(200, 5000, seed=5)
    drifted = make_snapshots(200, 5000, seed=5, drift=True)
    assert drifted.scoring["MonthlyCharges"].mean() > steady.scoring["MonthlyCharges"].mean() + 3
    assert (drifted.scoring["Contract"] == "Month-to-month").mean() > (
        steady.scoring["Contract"] == "Month-to-month"
    ).mean()


def test_shifts_move_the_named_scoring_columns_and_nothing_else():
    steady = make_snapshots(300, 2000, seed=5)
    shifts = {"MonthlyCharges": "+25", "tenure": "*0.5", "Contract": "Month-to-month@0.7"}
    shifted = make_snapshots(300, 2000, seed=5, shifts=shifts)
    pd.testing.assert_frame_equal(shifted.training, steady.training)  # the same customers and labels
    assert np.allclose(shifted.scoring["MonthlyCharges"], steady.scoring["MonthlyCharges"] + 25)
    assert shifted.scoring["tenure"].dtype == steady.scoring["tenure"].dtype  # whole numbers stay whole
    assert (shifted.scoring["tenure"] <= steady.scoring["tenure"]).all()
    assert (shifted.scoring["Contract"] == "Month-to-month").mean() > 0.75
    assert shifted.scoring["gender"].equals(steady.scoring["gender"])
    assert make_snapshots(300, 2000, seed=5, shifts=shifts).scoring.equals(shifted.scoring)  # seeded


def test_a_shift_of_a_column_the_snapshot_lacks_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="cannot shift 'Income'"):
        main(["--out", str(tmp_path), "--training-rows", "300", "--scoring-rows", "40", "--shift", "Income=+5"])


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_changes_the_snapshot(snapshots, defect):
    damaged = DEFECTS[defect](snapshots.training)
    assert not damaged.equals(snapshots.training)
    assert snapshots.training["customerID"].is_unique  # the original is untouched


def test_rows_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        make_snapshots(0, 10)


def test_command_line_writes_the_snapshots(tmp_path: Path, capsys):
    main(["--out", str(tmp_path), "--training-rows", "300", "--scoring-rows", "40", "--format", "parquet"])
    assert len(pd.read_parquet(tmp_path / "training.parquet")) == 300
    assert len(pd.read_parquet(tmp_path / "scoring.parquet")) == 40
    assert np.isclose(pd.read_parquet(tmp_path / "ground_truth.parquet").shape[0], 340)
    assert "wrote 300 training rows" in capsys.readouterr().out


def test_a_later_training_snapshot_can_label_the_customers_an_earlier_one_scored(tmp_path: Path, capsys):
    earlier, later = tmp_path / "earlier", tmp_path / "later"
    main(["--out", str(earlier), "--training-rows", "300", "--scoring-rows", "40", "--seed", "1"])
    later_options = ["--seed", "2", "--label-earlier-scoring", str(earlier / "scoring.csv")]
    main(["--out", str(later), "--training-rows", "300", "--scoring-rows", "40", *later_options])
    assert "wrote 340 training rows" in capsys.readouterr().out
    scored_before = read_snapshot(earlier / "scoring.csv")
    training = read_snapshot(later / "training.csv")
    # The new customers first, as without the option; then every earlier one, with an outcome.
    alone = make_snapshots(300, 40, seed=2)
    assert (
        training.iloc[:300]
        .drop(columns="TotalCharges")
        .equals(alone.training.drop(columns="TotalCharges").astype(training.dtypes.drop("TotalCharges").to_dict()))
    )
    labelled = training.iloc[300:].reset_index(drop=True)
    assert labelled[COLUMN_ORDER].equals(scored_before[COLUMN_ORDER])
    assert set(labelled["Churn"]) == {"Yes", "No"} and training["customerID"].is_unique
    assert not set(read_snapshot(later / "scoring.csv")["customerID"]) & set(scored_before["customerID"])
    truth = pd.read_parquet(later / "ground_truth.parquet")
    assert set(scored_before["customerID"]) <= set(truth.loc[truth["snapshot"] == "training", "customerID"])
