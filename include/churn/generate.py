"""Synthetic customers in the IBM Telco Customer Churn schema, with known churn odds.

Every customer's true churn probability comes from a fixed logistic model, so tests can
compare a trained model's ROC AUC with the best any model could reach on the same rows.
Realistic quirks are kept on purpose: blank ``TotalCharges`` at zero tenure, imbalanced
categories, dependent services, and about 26% churn.

Command line::

    python -m churn.generate --out .churn/sources --training-rows 20000 --scoring-rows 5000
    # drift for monitoring tests: higher bills, and 70% of customers on month-to-month contracts
    python -m churn.generate --out /tmp/drifted --shift MonthlyCharges=+25 --shift Contract=Month-to-month@0.7
    # a later date: its training snapshot also labels the customers an earlier one scored
    python -m churn.generate --out /tmp/later --seed 43 --label-earlier-scoring .churn/sources/scoring.csv
"""

from __future__ import annotations

import argparse
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

TARGET_CHURN_RATE = 0.265
ADD_ON_SERVICES = {
    "OnlineSecurity": 0.37,
    "OnlineBackup": 0.44,
    "DeviceProtection": 0.44,
    "TechSupport": 0.37,
    "StreamingTV": 0.49,
    "StreamingMovies": 0.50,
}
PAYMENT_METHODS = [
    "Electronic check",
    "Mailed check",
    "Bank transfer (automatic)",
    "Credit card (automatic)",
]
COLUMN_ORDER = [
    "customerID",
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    *ADD_ON_SERVICES,
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
]


@dataclass(frozen=True)
class Snapshots:
    """A labelled training snapshot, an unlabelled scoring snapshot and their true odds."""

    training: pd.DataFrame
    scoring: pd.DataFrame
    truth: pd.DataFrame  # customerID, snapshot, true_churn_probability


def _yes_no(mask: np.ndarray) -> np.ndarray:
    return np.where(mask, "Yes", "No")


def _customer_ids(count: int, rng: np.random.Generator) -> np.ndarray:
    """Unique ids shaped like the public data set's ``7590-VHVEG``."""
    ids: set[str] = set()
    letters = np.array(list(string.ascii_uppercase))
    while len(ids) < count:
        missing = count - len(ids)
        digits = rng.integers(0, 10_000, size=missing)
        suffixes = rng.choice(letters, size=(missing, 5))
        ids.update(f"{d:04d}-{''.join(s)}" for d, s in zip(digits, suffixes, strict=True))
    return rng.permutation(sorted(ids))


def generate_customers(count: int, rng: np.random.Generator, *, drift: bool = False) -> pd.DataFrame:
    """Customer attributes (no label) with the public schema's mixes and dependencies.

    ``drift`` shifts the population toward new, month-to-month, fibre customers with
    higher bills, as a market change would, for drift tests.
    """
    senior = rng.random(count) < 0.16
    partner = rng.random(count) < 0.48
    dependents = rng.random(count) < np.where(partner, 0.50, 0.12)
    new_share, long_share = (0.50, 0.12) if drift else (0.33, 0.20)
    segment = rng.choice(3, size=count, p=[new_share, 1 - new_share - long_share, long_share])
    tenure = np.select(
        [segment == 0, segment == 1],
        [np.minimum(rng.geometric(1 / 7, size=count), 24), rng.integers(1, 73, size=count)],
        rng.integers(60, 73, size=count),
    )
    tenure = np.where(rng.random(count) < 0.003, 0, tenure)
    long_contract_odds = np.clip(tenure / 72, 0, 1) * (0.45 if drift else 0.75)
    contract = np.where(
        rng.random(count) < long_contract_odds,
        np.where(rng.random(count) < 0.5, "One year", "Two year"),
        "Month-to-month",
    )
    phone = rng.random(count) < 0.90
    multiple_lines = np.where(phone, _yes_no(rng.random(count) < 0.47), "No phone service")
    internet = rng.choice(
        ["Fiber optic", "DSL", "No"], size=count, p=[0.55, 0.30, 0.15] if drift else [0.44, 0.34, 0.22]
    )
    has_internet = internet != "No"
    frame = pd.DataFrame(
        {
            "customerID": _customer_ids(count, rng),
            "gender": rng.choice(["Male", "Female"], size=count),
            "SeniorCitizen": senior.astype(int),
            "Partner": _yes_no(partner),
            "Dependents": _yes_no(dependents),
            "tenure": tenure.astype(int),
            "PhoneService": _yes_no(phone),
            "MultipleLines": multiple_lines,
            "InternetService": internet,
        }
    )
    add_on_count = np.zeros(count)
    for service, uptake in ADD_ON_SERVICES.items():
        subscribed = has_internet & (rng.random(count) < uptake)
        add_on_count += subscribed
        frame[service] = np.where(has_internet, _yes_no(subscribed), "No internet service")
    frame["Contract"] = contract
    frame["PaperlessBilling"] = _yes_no(rng.random(count) < 0.59)
    frame["PaymentMethod"] = rng.choice(PAYMENT_METHODS, size=count, p=[0.34, 0.23, 0.22, 0.21])
    internet_fee = np.select([internet == "Fiber optic", internet == "DSL"], [50.0, 25.0], 0.0)
    monthly = (
        np.where(phone, 20.0, 0.0)
        + np.where(multiple_lines == "Yes", 5.0, 0.0)
        + internet_fee
        + 5.0 * add_on_count
        + rng.normal(0, 2.5, size=count)
        + (6.0 if drift else 0.0)
    )
    monthly = np.where(~phone & ~has_internet, 20.0, monthly)
    frame["MonthlyCharges"] = np.clip(monthly, 18.25, 118.75).round(2)
    billed = frame["MonthlyCharges"] * tenure * rng.normal(1.0, 0.03, size=count)
    frame["TotalCharges"] = np.where(tenure == 0, np.nan, np.maximum(billed, 0).round(2))
    return frame[COLUMN_ORDER]


def churn_logit(customers: pd.DataFrame) -> np.ndarray:
    """The generator's true churn model, without its intercept."""
    contract = customers["Contract"].to_numpy()
    internet = customers["InternetService"].to_numpy()
    month_to_month = contract == "Month-to-month"
    fibre = internet == "Fiber optic"
    return (
        np.select([month_to_month, contract == "One year"], [0.9, -0.4], -1.4)
        - 0.55 * np.log1p(customers["tenure"].to_numpy(dtype=float))
        + np.select([fibre, internet == "DSL"], [0.65, 0.0], -0.7)
        + 0.45 * (customers["PaymentMethod"].to_numpy() == "Electronic check")
        + 0.25 * (customers["PaperlessBilling"].to_numpy() == "Yes")
        + 0.30 * customers["SeniorCitizen"].to_numpy(dtype=float)
        - 0.20 * (customers["Dependents"].to_numpy() == "Yes")
        - 0.35 * (customers["OnlineSecurity"].to_numpy() == "Yes")
        - 0.35 * (customers["TechSupport"].to_numpy() == "Yes")
        + 0.012 * (customers["MonthlyCharges"].to_numpy(dtype=float) - 65.0)
        + 0.35 * (fibre & month_to_month)
    )


def churn_intercept(logit: np.ndarray, target_rate: float = TARGET_CHURN_RATE) -> float:
    """The intercept that makes the mean true churn probability equal ``target_rate``."""
    low, high = -10.0, 10.0
    for _ in range(60):
        middle = (low + high) / 2
        if (1 / (1 + np.exp(-(logit + middle)))).mean() < target_rate:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def shift_features(frame: pd.DataFrame, shifts: Mapping[str, str], rng: np.random.Generator) -> pd.DataFrame:
    """``frame`` with columns shifted, as drift would: ``{"MonthlyCharges": "+25"}`` adds 25 to
    every value (``"*1.2"`` multiplies; a whole-number column stays whole), ``{"Contract":
    "Month-to-month@0.7"}`` moves a random 70% of rows (``rng`` draws them) to that level."""
    shifted = frame.copy()
    for column, change in shifts.items():
        if column not in shifted:
            raise ValueError(f"cannot shift {column!r}: the snapshot has no such column")
        if "@" in change:
            level, share = change.rsplit("@", 1)
            moved = rng.random(len(shifted)) < float(share)
            shifted[column] = np.where(moved, level, shifted[column].to_numpy(dtype=object))
            continue
        values = shifted[column].to_numpy(dtype=float)
        values = values * float(change[1:]) if change.startswith("*") else values + float(change)
        whole = pd.api.types.is_integer_dtype(shifted[column])
        shifted[column] = values.round().astype(int) if whole else values.round(2)
    return shifted


def true_churn_probability(customers: pd.DataFrame, intercept: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(churn_logit(customers) + intercept)))


def with_arrived_outcomes(
    snapshots: Snapshots, earlier_scoring: pd.DataFrame, intercept: float, rng: np.random.Generator
) -> Snapshots:
    """``snapshots`` whose training snapshot also holds ``earlier_scoring``'s customers, each
    labelled with an outcome drawn from its true churn odds: their outcome has arrived since
    an earlier date scored them."""
    earlier = earlier_scoring[COLUMN_ORDER].reset_index(drop=True)
    probability = true_churn_probability(earlier, intercept)
    labelled = earlier.assign(Churn=_yes_no(rng.random(len(earlier)) < probability))
    truth = pd.DataFrame(
        {"customerID": earlier["customerID"], "snapshot": "training", "true_churn_probability": probability}
    )
    return Snapshots(
        pd.concat([snapshots.training, labelled], ignore_index=True),
        snapshots.scoring,
        pd.concat([snapshots.truth, truth], ignore_index=True),
    )


def make_snapshots(
    training_rows: int,
    scoring_rows: int,
    *,
    seed: int = 42,
    drift: bool = False,
    shifts: Mapping[str, str] | None = None,
    earlier_scoring: pd.DataFrame | None = None,
) -> Snapshots:
    """Training customers with a sampled ``Churn`` label and distinct customers to score
    (their columns changed by ``shifts``, see :func:`shift_features`). With ``earlier_scoring``
    (an earlier date's scoring snapshot), the training snapshot also labels those customers,
    after its ``training_rows`` new ones (see :func:`with_arrived_outcomes`)."""
    if training_rows < 1 or scoring_rows < 1:
        raise ValueError("training_rows and scoring_rows must both be positive")
    rng = np.random.default_rng(seed)
    reference = generate_customers(training_rows, rng)
    intercept = churn_intercept(churn_logit(reference))
    customers = pd.concat(
        [reference, generate_customers(scoring_rows * 2, rng, drift=drift)], ignore_index=True
    ).drop_duplicates("customerID", keep="first")
    if earlier_scoring is not None:
        # No new customer may share an id with an earlier one: ids are unique in a snapshot.
        customers = customers[~customers["customerID"].isin(earlier_scoring["customerID"])]
    training = customers.iloc[:training_rows].reset_index(drop=True)
    scoring = customers.iloc[training_rows : training_rows + scoring_rows].reset_index(drop=True)
    if shifts:
        # A generator of its own, so the same seed gives the same customers and labels with or without shifts.
        scoring = shift_features(scoring, shifts, np.random.default_rng([seed, 1]))
    truth_parts = []
    for name, snapshot in (("training", training), ("scoring", scoring)):
        probability = true_churn_probability(snapshot, intercept)
        truth_parts.append(
            pd.DataFrame(
                {
                    "customerID": snapshot["customerID"],
                    "snapshot": name,
                    "true_churn_probability": probability,
                }
            )
        )
        if name == "training":
            training = training.assign(Churn=_yes_no(rng.random(len(snapshot)) < probability))
    snapshots = Snapshots(training, scoring, pd.concat(truth_parts, ignore_index=True))
    if earlier_scoring is None:
        return snapshots
    # A generator of its own, so the new customers' labels are the same with or without them.
    return with_arrived_outcomes(snapshots, earlier_scoring, intercept, np.random.default_rng([seed, 2]))


def as_public_csv_text(snapshot: pd.DataFrame) -> pd.DataFrame:
    """Render numbers as the public CSV does: ``TotalCharges`` is text, blank at tenure 0."""
    rendered = snapshot.copy()
    rendered["TotalCharges"] = [
        " " if pd.isna(value) else f"{value:.2f}".rstrip("0").rstrip(".") for value in snapshot["TotalCharges"]
    ]
    return rendered


def _drop_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["MonthlyCharges"])


def _text_in_tenure(frame: pd.DataFrame) -> pd.DataFrame:
    damaged = frame.astype({"tenure": "object"})
    damaged.loc[damaged.index[:3], "tenure"] = ["twelve", "n/a", "3 months"]
    return damaged


def _unknown_contract(frame: pd.DataFrame) -> pd.DataFrame:
    damaged = frame.copy()
    damaged.loc[damaged.index[:5], "Contract"] = "Three year"
    return damaged


def _out_of_range(frame: pd.DataFrame) -> pd.DataFrame:
    damaged = frame.astype({"MonthlyCharges": "object", "tenure": "object"})
    damaged.loc[damaged.index[0], "MonthlyCharges"] = -12.5
    damaged.loc[damaged.index[1], "tenure"] = 900
    return damaged


def _duplicate_ids(frame: pd.DataFrame) -> pd.DataFrame:
    damaged = frame.copy()
    damaged.loc[damaged.index[1:4], "customerID"] = damaged["customerID"].iloc[0]
    return damaged


def _null_ids(frame: pd.DataFrame) -> pd.DataFrame:
    damaged = frame.astype({"customerID": "object"})
    damaged.loc[damaged.index[:2], "customerID"] = None
    return damaged


# Data defects a test can inject into a snapshot, by name.
DEFECTS: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
    "missing_column": _drop_column,
    "text_in_tenure": _text_in_tenure,
    "unknown_contract": _unknown_contract,
    "out_of_range": _out_of_range,
    "duplicate_ids": _duplicate_ids,
    "null_ids": _null_ids,
}


def write_snapshots(snapshots: Snapshots, out_dir: Path, *, file_format: str = "csv") -> dict[str, Path]:
    """Write the snapshots (CSV in the public text form, or Parquet) and the true odds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in (("training", snapshots.training), ("scoring", snapshots.scoring)):
        path = out_dir / f"{name}.{file_format}"
        if file_format == "csv":
            as_public_csv_text(frame).to_csv(path, index=False)
        elif file_format == "parquet":
            frame.to_parquet(path, index=False)
        else:
            raise ValueError(f"unknown file format {file_format!r}; use csv or parquet")
        paths[name] = path
    paths["truth"] = out_dir / "ground_truth.parquet"
    snapshots.truth.to_parquet(paths["truth"], index=False)
    return paths


def read_snapshot(path: Path) -> pd.DataFrame:
    """A snapshot this module wrote, CSV (the public text form) or Parquet, with its numbers as numbers."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    frame = pd.read_csv(path, dtype={"customerID": str})
    return frame.assign(TotalCharges=pd.to_numeric(frame["TotalCharges"], errors="coerce"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--training-rows", type=int, default=20_000)
    parser.add_argument("--scoring-rows", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--format", choices=["csv", "parquet"], default="csv")
    parser.add_argument("--drift", action="store_true", help="shift the scoring population")
    parser.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="COLUMN=CHANGE",
        help="shift a scoring column: +N or *N for a number, LEVEL@SHARE moves that share of rows to a level",
    )
    parser.add_argument("--defect", choices=sorted(DEFECTS), help="damage the training snapshot")
    parser.add_argument(
        "--label-earlier-scoring",
        type=Path,
        metavar="SCORING_FILE",
        help="an earlier scoring snapshot (CSV or Parquet) whose customers the training snapshot also labels",
    )
    args = parser.parse_args(argv)
    shifts = dict(shift.split("=", 1) for shift in args.shift)
    snapshots = make_snapshots(
        args.training_rows,
        args.scoring_rows,
        seed=args.seed,
        drift=args.drift,
        shifts=shifts,
        earlier_scoring=read_snapshot(args.label_earlier_scoring) if args.label_earlier_scoring else None,
    )
    if args.defect:
        snapshots = Snapshots(DEFECTS[args.defect](snapshots.training), snapshots.scoring, snapshots.truth)
    paths = write_snapshots(snapshots, args.out, file_format=args.format)
    churn_rate = (snapshots.training["Churn"] == "Yes").mean() if "Churn" in snapshots.training else float("nan")
    print(
        f"wrote {len(snapshots.training)} training rows ({churn_rate:.1%} churn) to {paths['training']}, "
        f"{len(snapshots.scoring)} scoring rows to {paths['scoring']}, true odds to {paths['truth']}"
    )


if __name__ == "__main__":
    main()
