"""The data contract: one YAML file that says what a churn table must look like.

Validation, typing and feature engineering all read the contract, so a different churn
table needs only its own contract file. The file is read into typed objects that refuse
unknown keys, so a misspelt rule fails at ``validate`` instead of being ignored.
"""

from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import (
    BeforeValidator,
    Field,
    PositiveInt,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from churn.documents import ConfigurationError, Strict, parse_document

# YAML reads an unquoted value such as 1 or Yes as a number or a boolean; this one compares as text.
CellText = Annotated[str, BeforeValidator(str)]
# Joins the parts of a composite customer id into the warehouse's one key, which holds at
# most CUSTOMER_ID_LENGTH characters.
CUSTOMER_ID_SEPARATOR = "|"
CUSTOMER_ID_LENGTH = 64


class ContractError(ConfigurationError):
    """The contract file itself is missing or malformed."""


# Label spellings as YAML reads them: "Yes", 1, true. Strict types keep true a boolean, not 1.
LabelValue = StrictBool | StrictInt | StrictFloat | StrictStr
LabelValues = Annotated[
    tuple[LabelValue, ...],
    BeforeValidator(lambda raw: raw if isinstance(raw, list | tuple) else [raw]),
    Field(min_length=1),
]
# What a column is for. Only features are modelled; ``ignore`` and ``leak`` columns are
# validated by their rules and kept out of the model (a leak: recorded after the outcome).
Role = Literal["feature", "id", "label", "ignore", "leak"]
NOT_MODELLED_BECAUSE = {
    "ignore": "ignored by the contract (role: ignore): validated, never modelled",
    "leak": "a known leak (role: leak): recorded after the outcome, so refused as a feature",
}


class ColumnSpec(Strict):
    name: str
    type: Literal["string", "category", "integer", "number", "boolean"]
    role: Role = "feature"
    # How the model sees a feature: numbers as numbers, anything else as categories, unless
    # said otherwise (an area code or a 0/1 flag may be ``categorical``).
    model_as: Literal["numeric", "categorical"] | None = None
    # A label column's values: each class in every spelling the files use.
    positive: LabelValues | None = None
    negative: LabelValues | None = None
    values: tuple[str | int | float, ...] | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    # Share of blank cells allowed: 0 unless the column is nullable (then 1 unless given).
    max_null_fraction: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    unique: bool = False
    max_length: PositiveInt | None = None

    @model_validator(mode="before")
    @classmethod
    def _null_fraction_follows_nullable(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        if not raw.get("nullable", False):
            return {**raw, "max_null_fraction": 0.0}
        return {"max_null_fraction": 1.0, **raw}

    @model_validator(mode="after")
    def _rules_fit_the_type_and_role(self) -> ColumnSpec:
        numbers = all(isinstance(value, int | float) for value in self.values or ())
        if self.is_numeric and not numbers:
            raise ValueError(f"column {self.name!r}: the values of a numeric column must be numbers")
        if not self.is_numeric and (self.min is not None or self.max is not None):
            raise ValueError(f"column {self.name!r}: min and max apply to integer and number columns only")
        if self.type == "boolean" and self.values is not None:
            raise ValueError(
                f"column {self.name!r}: a boolean column's values are the csv true_values and false_values"
            )
        is_label = self.role == "label"
        classes = [given for given in (self.positive, self.negative) if given is not None]
        if (is_label and len(classes) < 2) or (classes and not is_label):
            raise ValueError(
                f"column {self.name!r}: a label column declares its classes with positive and negative "
                "(and only a label column does), e.g. {role: label, positive: ['Yes', 1], negative: ['No', 0]}"
            )
        if is_label and self.values is not None:
            raise ValueError(f"column {self.name!r}: a label's values are its positive and negative spellings")
        if self.role in {"id", "label"} and self.nullable:
            raise ValueError(f"column {self.name!r}: an {self.role} column cannot be nullable")
        if self.role == "id" and (
            self.type in {"number", "boolean"} or self.min is not None or self.max is not None
        ):
            raise ValueError(
                f"column {self.name!r}: an id column is string, category or integer text, without min or max"
            )
        if self.model_as is not None and self.role != "feature":
            raise ValueError(f"column {self.name!r}: model_as applies to features only, not to role {self.role}")
        if self.model_as == "numeric" and self.type in {"string", "category"}:
            raise ValueError(f"column {self.name!r}: a {self.type} column cannot be modelled as numeric")
        return self

    @property
    def is_numeric(self) -> bool:
        return self.type in {"integer", "number"}

    @property
    def modelled_as(self) -> Literal["numeric", "categorical"]:
        """How the model sees this feature: as declared, else numbers and booleans as numbers."""
        if self.model_as is not None:
            return self.model_as
        return "numeric" if self.is_numeric or self.type == "boolean" else "categorical"


class BandFeature(Strict):
    """A numeric column cut into labelled bands at ``edges`` (upper edges inclusive)."""

    kind: Literal["band"]
    name: str
    column: str
    edges: tuple[int | float, ...] = Field(min_length=1)

    @property
    def inputs(self) -> list[str]:
        return [self.column]


class RatioFeature(Strict):
    """``numerator / denominator``, or ``fallback`` where the ratio is undefined."""

    kind: Literal["ratio"]
    name: str
    numerator: str
    denominator: str
    fallback: str | None = None

    @property
    def inputs(self) -> list[str]:
        return [c for c in (self.numerator, self.denominator, self.fallback) if c is not None]


class CountEqualFeature(Strict):
    """How many of ``columns`` hold ``value`` in each row."""

    kind: Literal["count_equal"]
    name: str
    columns: tuple[str, ...] = Field(min_length=1)
    value: CellText

    @property
    def inputs(self) -> list[str]:
        return list(self.columns)


DerivedFeature = Annotated[BandFeature | RatioFeature | CountEqualFeature, Field(discriminator="kind")]


# The delimiters a CSV may use: declared in a contract, or detected among these.
CsvDelimiter = Literal[",", ";", "\t", "|"]


class CsvDialect(Strict):
    """How the contract's CSV files are written. The delimiter is detected unless declared;
    quoted fields and a UTF-8 byte order mark are always understood."""

    delimiter: CsvDelimiter | None = None
    decimal: Literal[".", ","] = "."
    encoding: str = "utf-8"
    # Spellings of a boolean column's values (and of a label given as true or false). Parquet's
    # own booleans read as True and False, which are always accepted too.
    true_values: tuple[str, ...] = ("true", "True", "TRUE")
    false_values: tuple[str, ...] = ("false", "False", "FALSE")

    @model_validator(mode="after")
    def _unambiguous(self) -> CsvDialect:
        if self.decimal == self.delimiter:
            raise ValueError(f"decimal and delimiter are both {self.decimal!r}")
        both = set(self.true_values) & set(self.false_values)
        if both:
            raise ValueError(f"{sorted(both)} are both true_values and false_values")
        try:
            codecs.lookup(self.encoding)
        except LookupError as error:
            raise ValueError(f"unknown encoding {self.encoding!r}") from error
        return self

    @property
    def booleans(self) -> dict[str, bool]:
        """Each accepted spelling of a boolean, as the boolean it means."""
        spellings = {"True": True, "False": False}
        spellings.update({text: True for text in self.true_values})
        spellings.update({text: False for text in self.false_values})
        return spellings


@dataclass(frozen=True)
class LabelRule:
    """Which label values mean "churned": the contract's spellings, compared as the column is
    typed (numerically for numbers, as booleans for booleans, as text otherwise)."""

    column: str
    compared_as: Literal["Float64", "boolean", "string"]  # the pandas type labels are compared in
    positive: frozenset[Any]
    negative: frozenset[Any]
    spelled: tuple[tuple[LabelValue, ...], tuple[LabelValue, ...]]

    def is_positive(self, labels: pd.Series) -> np.ndarray:
        """True for each row whose label is a positive one: the one test of churn, used by
        validation, training, evaluation and monitoring alike."""
        comparable = labels.astype(self.compared_as)
        return comparable.isin(self.positive).to_numpy(dtype=bool, na_value=False)

    @property
    def values(self) -> list[Any]:
        """Every accepted label value, as compared: what validation allows in the column."""
        return sorted(self.positive | self.negative, key=str)

    def describe(self) -> str:
        positive, negative = self.spelled
        return f"positive {list(positive)}, negative {list(negative)}"


def label_values(spelling: LabelValue, spec: ColumnSpec, dialect: CsvDialect) -> set[Any]:
    """One label spelling as the column's values compare: a number, a boolean, or text (where
    true and false stand for every spelling of them the contract's CSV dialect accepts)."""
    if spec.is_numeric:
        try:
            return {float(spelling)}
        except ValueError:
            problem = f"label {spelling!r} is not a number, but column {spec.name!r} is {spec.type}"
            raise ValueError(problem) from None
    if spec.type == "boolean":
        if isinstance(spelling, bool):
            return {spelling}
        if isinstance(spelling, int | float) and spelling in (0, 1):
            return {bool(spelling)}
        if isinstance(spelling, str) and spelling in dialect.booleans:
            return {dialect.booleans[spelling]}
        raise ValueError(
            f"label {spelling!r} is not a boolean spelling of column {spec.name!r} "
            f"(csv true_values {list(dialect.true_values)}, false_values {list(dialect.false_values)})"
        )
    if isinstance(spelling, bool):
        return {text for text, meaning in dialect.booleans.items() if meaning is spelling}
    return {f"{spelling:g}" if isinstance(spelling, float) else str(spelling)}


class Contract(Strict):
    name: str
    extra_columns: Literal["reject", "allow"] = "reject"
    min_training_rows: PositiveInt = 100
    # Rows each label class needs at least in a training snapshot. Never fewer than training's
    # cross-validation needs (see churn.validate.label_class_minimum), which is the default.
    min_label_class_rows: PositiveInt | None = None
    label_leakage_auc: Annotated[float, Field(gt=0.5, le=1.0)] = 0.99
    csv: CsvDialect = CsvDialect()
    columns: dict[str, ColumnSpec]
    derived_features: tuple[DerivedFeature, ...] = ()
    # Not written in the file: where it came from and a hash of its text.
    fingerprint: str = ""
    source: str = ""

    @model_validator(mode="before")
    @classmethod
    def _columns_know_their_names(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        if "id_column" in raw or "label" in raw:
            raise ValueError(
                "'id_column' and 'label' are now roles of the columns: write `role: id` on the id column(s) "
                "and `role: label, positive: [...], negative: [...]` on the label column"
            )
        if isinstance(raw.get("columns"), dict):
            named = {name: {**(spec or {}), "name": name} for name, spec in raw["columns"].items()}
            return {**raw, "columns": named}
        return raw

    @model_validator(mode="after")
    def _roles_and_references_hold(self) -> Contract:
        if not self.id_columns:
            raise ValueError(
                "no column identifies a customer: give the id column `role: id` (e.g. "
                "customerID: {type: string, role: id}), or several columns for a composite key"
            )
        labels = [spec.name for spec in self.columns.values() if spec.role == "label"]
        if len(labels) != 1:
            raise ValueError(f"exactly one column must have role: label, not {len(labels)} ({labels})")
        self.label  # noqa: B018  (refuses spellings that the label column cannot hold)
        for feature in self.derived_features:
            unusable = [c for c in feature.inputs if c not in self.feature_columns]
            if unusable:
                raise ValueError(
                    f"derived feature {feature.name!r} uses columns that are not features: {unusable}"
                )
        return self

    @property
    def label(self) -> LabelRule:
        spec = next(spec for spec in self.columns.values() if spec.role == "label")
        assert spec.positive is not None and spec.negative is not None
        positive = frozenset().union(*(label_values(value, spec, self.csv) for value in spec.positive))
        negative = frozenset().union(*(label_values(value, spec, self.csv) for value in spec.negative))
        if positive & negative:
            both = sorted(positive & negative, key=str)
            raise ValueError(f"label column {spec.name!r}: {both} are both positive and negative")
        compared_as = "Float64" if spec.is_numeric else "boolean" if spec.type == "boolean" else "string"
        return LabelRule(spec.name, compared_as, positive, negative, (spec.positive, spec.negative))

    @property
    def label_column(self) -> str:
        return self.label.column

    def is_positive(self, labels: pd.Series) -> np.ndarray:
        """Which rows churned: see :meth:`LabelRule.is_positive`."""
        return self.label.is_positive(labels)

    @property
    def id_columns(self) -> list[str]:
        """The columns that together identify a customer, in the contract's order."""
        return [name for name, spec in self.columns.items() if spec.role == "id"]

    @property
    def feature_columns(self) -> list[str]:
        """Columns the model learns from: those with the role ``feature``."""
        return [name for name, spec in self.columns.items() if spec.role == "feature"]

    @property
    def not_modelled(self) -> dict[str, str]:
        """Named columns kept out of the model on purpose (ignored, leaks), and why."""
        return {
            name: NOT_MODELLED_BECAUSE[spec.role]
            for name, spec in self.columns.items()
            if spec.role in NOT_MODELLED_BECAUSE
        }

    def expected_columns(self, *, labelled: bool) -> list[str]:
        """Columns a snapshot must carry; scoring snapshots need no label."""
        return [c for c in self.columns if labelled or c != self.label_column]

    def allowed_values(self, column: str) -> list[Any] | None:
        """The values ``column`` may hold, as validation compares them, or None for any."""
        spec = self.columns[column]
        accepted = self.label.values if spec.role == "label" else None
        if spec.type == "boolean":  # as written: each spelling of an accepted boolean
            return sorted(
                text for text, meaning in self.csv.booleans.items() if accepted is None or meaning in accepted
            )
        if accepted is not None:
            return accepted
        return None if spec.values is None else list(spec.values)

    def customer_ids(self, frame: pd.DataFrame) -> pd.Series:
        """Each row's customer id as the warehouse keys it: the id column's text, or the id
        columns' texts joined by ``|`` for a composite key."""
        return joined_text(frame, self.id_columns)


def joined_text(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """The text of ``columns`` joined by :data:`CUSTOMER_ID_SEPARATOR`; missing where any part is."""
    first, *others = (frame[column].astype("string") for column in columns)
    return first.str.cat(others, sep=CUSTOMER_ID_SEPARATOR) if others else first


def parse_contract(text: str, source: str) -> Contract:
    """Build a :class:`Contract` from YAML text, with errors that name the file and the key."""
    contract = parse_document(Contract, text, f"contract {source}", error=ContractError)
    return contract.model_copy(
        update={"fingerprint": hashlib.sha256(text.encode("utf-8")).hexdigest(), "source": source}
    )


def load_contract(reference: str) -> Contract:
    """Load a bundled contract by name (``telco_churn``) or any contract file by path."""
    bundled = resources.files("churn").joinpath("contracts", f"{reference}.yaml")
    if "/" not in reference and not reference.endswith((".yaml", ".yml")) and bundled.is_file():
        return parse_contract(bundled.read_text(encoding="utf-8"), f"bundled:{reference}")
    path = Path(reference).expanduser()
    if not path.is_file():
        raise ContractError(f"contract {reference!r} is neither a bundled contract nor an existing file")
    return parse_contract(path.read_text(encoding="utf-8"), str(path.resolve()))
