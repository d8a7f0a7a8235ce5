"""The data contract: one YAML file that says what a churn table must look like.

Validation, typing and feature engineering all read the contract, so a different churn
table needs only its own contract file. The file is read into typed objects that refuse
unknown keys, so a misspelt rule fails at ``validate`` instead of being ignored.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PositiveInt, model_validator

from churn.documents import ConfigurationError, Strict, parse_document

# YAML reads an unquoted label such as 1 or Yes as a number or a boolean; labels compare as text.
LabelText = Annotated[str, BeforeValidator(str)]


class ContractError(ConfigurationError):
    """The contract file itself is missing or malformed."""


class ColumnSpec(Strict):
    name: str
    type: Literal["string", "category", "integer", "number"]
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
    def _numeric_values_are_numbers(self) -> ColumnSpec:
        numbers = all(isinstance(value, int | float) for value in self.values or ())
        if self.is_numeric and not numbers:
            raise ValueError(f"column {self.name!r}: the values of a numeric column must be numbers")
        return self

    @property
    def is_numeric(self) -> bool:
        return self.type in {"integer", "number"}


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
    value: LabelText

    @property
    def inputs(self) -> list[str]:
        return list(self.columns)


DerivedFeature = Annotated[BandFeature | RatioFeature | CountEqualFeature, Field(discriminator="kind")]


class LabelSpec(Strict):
    column: str
    positive: LabelText
    negative: LabelText


class Contract(Strict):
    name: str
    id_column: str
    label: LabelSpec
    extra_columns: Literal["reject", "allow"] = "reject"
    min_training_rows: PositiveInt = 100
    label_leakage_auc: Annotated[float, Field(gt=0.5, le=1.0)] = 0.99
    columns: dict[str, ColumnSpec]
    derived_features: tuple[DerivedFeature, ...] = ()
    # Not written in the file: where it came from and a hash of its text.
    fingerprint: str = ""
    source: str = ""

    @model_validator(mode="before")
    @classmethod
    def _columns_know_their_names(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("columns"), dict):
            named = {name: {**(spec or {}), "name": name} for name, spec in raw["columns"].items()}
            return {**raw, "columns": named}
        return raw

    @model_validator(mode="after")
    def _references_are_declared(self) -> Contract:
        for required in (self.id_column, self.label.column):
            if required not in self.columns:
                raise ValueError(f"{required!r} is not among its columns")
        for feature in self.derived_features:
            missing = [column for column in feature.inputs if column not in self.columns]
            if missing:
                raise ValueError(f"derived feature {feature.name!r} uses undeclared columns {missing}")
        return self

    @property
    def label_column(self) -> str:
        return self.label.column

    @property
    def positive_label(self) -> str:
        return self.label.positive

    @property
    def negative_label(self) -> str:
        return self.label.negative

    @property
    def feature_columns(self) -> list[str]:
        """Columns the model learns from: everything but the id and the label."""
        return [c for c in self.columns if c not in {self.id_column, self.label_column}]

    def expected_columns(self, *, labelled: bool) -> list[str]:
        """Columns a snapshot must carry; scoring snapshots need no label."""
        return [c for c in self.columns if labelled or c != self.label_column]


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
