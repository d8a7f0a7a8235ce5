"""Churn tables of other kinds than the Telco one, each in the schema and the file form its
public data set comes in, generated with a known signal so a model has something to learn.

Their contracts are bundled (``bank_customer_churn``, ``credit_card_attrition``,
``telecom_usage_churn``); these tables prove that a contract alone is enough for each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

NAIVE_BAYES = (
    "Naive_Bayes_Classifier_Attrition_Flag_Card_Category_Contacts_Count_12_mon_Dependent_count_"
    "Education_Level_Months_Inactive_12_mon_"
)


def _churned(rng: np.random.Generator, logit: np.ndarray) -> np.ndarray:
    return rng.random(len(logit)) < 1 / (1 + np.exp(-logit))


def bank_customers(rows: int, seed: int) -> pd.DataFrame:
    """Retail bank customers; ``Exited`` is 0/1 and ``Complain`` follows it (a leak)."""
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 90, rows)
    products = rng.choice([1, 2, 3, 4], rows, p=[0.5, 0.45, 0.04, 0.01])
    active = rng.integers(0, 2, rows)
    geography = rng.choice(["France", "Spain", "Germany"], rows, p=[0.5, 0.25, 0.25])
    balance = np.where(rng.random(rows) < 0.35, 0.0, rng.normal(120_000, 30_000, rows).clip(1_000)).round(2)
    logit = (
        -2.4
        + 0.06 * (age - 40)
        - 1.0 * active
        + np.select([products == 2, products >= 3], [-1.2, 2.5], 0.0)
        + 0.7 * (geography == "Germany")
    )
    exited = _churned(rng, logit).astype(int)
    return pd.DataFrame(
        {
            "RowNumber": np.arange(1, rows + 1),
            "CustomerId": 15_600_000 + rng.permutation(rows),
            "Surname": rng.choice(["Hargrave", "Hill", "Onio", "Boni", "Mitchell", "Chu", "O'Brien, Jr"], rows),
            "CreditScore": rng.integers(350, 851, rows),
            "Geography": geography,
            "Gender": rng.choice(["Male", "Female"], rows),
            "Age": age,
            "Tenure": rng.integers(0, 11, rows),
            "Balance": balance,
            "NumOfProducts": products,
            "HasCrCard": rng.integers(0, 2, rows),
            "IsActiveMember": active,
            "EstimatedSalary": rng.uniform(10, 200_000, rows).round(2),
            "Exited": exited,
            # Filed on the way out: all but a few churners complained, almost no one else.
            "Complain": np.where(rng.random(rows) < 0.998, exited, 1 - exited),
            "Satisfaction Score": rng.integers(1, 6, rows),
            "Card Type": rng.choice(["SILVER", "GOLD", "PLATINUM", "DIAMOND"], rows),
            "Point Earned": rng.integers(100, 1000, rows),
        }
    )


def credit_card_customers(rows: int, seed: int) -> pd.DataFrame:
    """Credit-card holders; the label is a phrase, and two columns are another model's scores."""
    rng = np.random.default_rng(seed)
    transactions = rng.integers(10, 140, rows)
    inactive = rng.integers(0, 7, rows)
    contacts = rng.integers(0, 7, rows)
    relationships = rng.integers(1, 7, rows)
    limit = rng.uniform(1_500, 35_000, rows).round(1)
    revolving = rng.uniform(0, np.minimum(2_500, limit)).round(0)
    logit = -0.2 - 0.05 * (transactions - 65) + 0.4 * inactive + 0.35 * contacts - 0.3 * relationships
    attrited = _churned(rng, logit)
    scores = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.3, rows))))
    frame = pd.DataFrame(
        {
            "CLIENTNUM": 700_000_000 + rng.permutation(rows) * 37,
            "Attrition_Flag": np.where(attrited, "Attrited Customer", "Existing Customer"),
            "Customer_Age": rng.integers(26, 74, rows),
            "Gender": rng.choice(["M", "F"], rows),
            "Dependent_count": rng.integers(0, 6, rows),
            "Education_Level": rng.choice(
                ["Uneducated", "High School", "College", "Graduate", "Post-Graduate", "Doctorate", "Unknown"], rows
            ),
            "Marital_Status": rng.choice(["Married", "Single", "Divorced", "Unknown"], rows),
            "Income_Category": rng.choice(
                ["Less than $40K", "$40K - $60K", "$60K - $80K", "$80K - $120K", "$120K +", "Unknown"], rows
            ),
            "Card_Category": rng.choice(["Blue", "Silver", "Gold", "Platinum"], rows, p=[0.9, 0.06, 0.03, 0.01]),
            "Months_on_book": rng.integers(13, 57, rows),
            "Total_Relationship_Count": relationships,
            "Months_Inactive_12_mon": inactive,
            "Contacts_Count_12_mon": contacts,
            "Credit_Limit": limit,
            "Total_Revolving_Bal": revolving,
            "Avg_Open_To_Buy": (limit - revolving).round(1),
            "Total_Amt_Chng_Q4_Q1": rng.uniform(0, 3, rows).round(3),
            "Total_Trans_Amt": (transactions * rng.uniform(20, 120, rows)).round(0),
            "Total_Trans_Ct": transactions,
            "Total_Ct_Chng_Q4_Q1": rng.uniform(0, 3, rows).round(3),
            "Avg_Utilization_Ratio": (revolving / limit).round(3),
        }
    )
    frame[f"{NAIVE_BAYES}1"] = scores.round(5)
    frame[f"{NAIVE_BAYES}2"] = (1 - scores).round(5)
    return frame


def telecom_lines(rows: int, seed: int) -> pd.DataFrame:
    """Mobile lines with a day's usage; the label is a boolean; a line is its area code and phone."""
    rng = np.random.default_rng(seed)
    day_minutes = rng.normal(180, 55, rows).clip(0).round(1)
    service_calls = rng.poisson(1.5, rows)
    international = rng.choice(["yes", "no"], rows, p=[0.1, 0.9])
    logit = (
        -3.2 + 0.02 * (day_minutes - 180) + np.where(service_calls >= 4, 2.6, 0.0) + 2.0 * (international == "yes")
    )
    minutes = {period: rng.normal(200, 50, rows).clip(0).round(1) for period in ("Eve", "Night")}
    intl_minutes = rng.normal(10, 2.8, rows).clip(0).round(1)
    # Seven-digit numbers, unique within an area code; a few recur under another code.
    area_codes = rng.choice([408, 415, 510], rows)
    phones = rng.choice(np.arange(3_300_000, 4_300_000), rows, replace=False)
    recurring = min(20, rows // 4)
    phones[:recurring] = phones[recurring : 2 * recurring]
    area_codes[:recurring] = np.where(area_codes[recurring : 2 * recurring] == 408, 415, 408)
    return pd.DataFrame(
        {
            "State": rng.choice(["KS", "OH", "NJ", "OK", "AL", "MA", "MO", "WV"], rows),
            "Account Length": rng.integers(1, 240, rows),
            "Area Code": area_codes,
            "Phone": [f"{number // 10_000}-{number % 10_000:04d}" for number in phones],
            "Int'l Plan": international,
            "VMail Plan": rng.choice(["yes", "no"], rows, p=[0.28, 0.72]),
            "VMail Message": rng.integers(0, 50, rows),
            "Day Mins": day_minutes,
            "Day Calls": rng.integers(40, 160, rows),
            "Day Charge": (day_minutes * 0.17).round(2),
            "Eve Mins": minutes["Eve"],
            "Eve Calls": rng.integers(40, 160, rows),
            "Eve Charge": (minutes["Eve"] * 0.085).round(2),
            "Night Mins": minutes["Night"],
            "Night Calls": rng.integers(40, 160, rows),
            "Night Charge": (minutes["Night"] * 0.045).round(2),
            "Intl Mins": intl_minutes,
            "Intl Calls": rng.integers(0, 12, rows),
            "Intl Charge": (intl_minutes * 0.27).round(2),
            "CustServ Calls": service_calls,
            "Churn?": _churned(rng, logit),
        }
    )


def write_with_bom(frame: pd.DataFrame, path: Path) -> None:
    """Comma-separated, quoted where needed, with the byte order mark spreadsheet programs add."""
    frame.to_csv(path, index=False, encoding="utf-8-sig")


def write_tab_separated(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, sep="\t")


def write_european_spreadsheet(frame: pd.DataFrame, path: Path) -> None:
    """Semicolons, decimal commas and TRUE/FALSE, as a spreadsheet in a European locale saves it."""
    spelled = frame.replace({True: "TRUE", False: "FALSE"}) if "Churn?" in frame else frame
    spelled.to_csv(path, index=False, sep=";", decimal=",")


@dataclass(frozen=True)
class ChurnTable:
    contract: str
    make: Callable[[int, int], pd.DataFrame]
    write: Callable[[pd.DataFrame, Path], None]
    label: str

    def files(self, folder: Path, *, training_rows: int = 1500, scoring_rows: int = 400) -> dict[str, Path]:
        """A training and a scoring snapshot (without the label) written in the table's own form."""
        folder.mkdir(parents=True, exist_ok=True)
        frames = {
            "training": self.make(training_rows, 11),
            "scoring": self.make(scoring_rows, 12).drop(columns=[self.label]),
        }
        paths = {}
        for name, frame in frames.items():
            paths[name] = folder / f"{name}.csv"
            self.write(frame, paths[name])
        return paths


TABLES = {
    "bank": ChurnTable("bank_customer_churn", bank_customers, write_with_bom, "Exited"),
    "credit_card": ChurnTable(
        "credit_card_attrition", credit_card_customers, write_tab_separated, "Attrition_Flag"
    ),
    "telecom": ChurnTable("telecom_usage_churn", telecom_lines, write_european_spreadsheet, "Churn?"),
}
