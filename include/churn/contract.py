"""The data contract: one YAML file that says what a churn table must look like.

Validation, typing and feature engineering all read the contract, so a different churn
table needs only its own contract file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

COLUMN_TYPES = frozenset({"string", "category", "integer", "number"})
DERIVED_KINDS = frozenset({"band", "ratio", "count_equal"})
EXTRA_COLUMN_POLICIES = frozenset({"reject", "allow"})


class ContractError(ValueError):
    """The contract file itself is missing or malformed."""


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    values: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    nullable: bool = False
    max_null_fraction: float = 0.0
    unique: bool = False
    max_length: int | None = None

    @property
    def is_numeric(self) -> bool:
        return self.type in {"integer", "number"}


@dataclass(frozen=True)
class DerivedFeature:
    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Contract:
    name: str
    id_column: str
    label_column: str
    positive_label: str
    negative_label: str
    extra_columns: str
    min_training_rows: int
    label_leakage_auc: float
    columns: dict[str, ColumnSpec]
    derived_features: tuple[DerivedFeature, ...]
    fingerprint: str
    source: str

    @property
    def feature_columns(self) -> list[str]:
        """Columns the model learns from: everything but the id and the label."""
        return [c for c in self.columns if c not in {self.id_column, self.label_column}]

    def expected_columns(self, *, labelled: bool) -> list[str]:
        """Columns a snapshot must carry; scoring snapshots need no label."""
        return [c for c in self.columns if labelled or c != self.label_column]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _column_spec(name: str, raw: dict[str, Any]) -> ColumnSpec:
    column_type = raw.get("type")
    if column_type not in COLUMN_TYPES:
        raise ContractError(f"column {name!r}: type {column_type!r} is not one of {sorted(COLUMN_TYPES)}")
    unknown_keys = set(raw) - {f for f in ColumnSpec.__dataclass_fields__ if f != "name"}
    if unknown_keys:
        raise ContractError(f"column {name!r}: unknown keys {sorted(unknown_keys)}")
    values = raw.get("values")
    if values is not None and not isinstance(values, list):
        raise ContractError(f"column {name!r}: values must be a list")
    nullable = bool(raw.get("nullable", False))
    max_null_fraction = float(raw.get("max_null_fraction", 1.0 if nullable else 0.0))
    if not 0.0 <= max_null_fraction <= 1.0:
        raise ContractError(f"column {name!r}: max_null_fraction must be between 0 and 1")
    max_length = raw.get("max_length")
    if max_length is not None and (
        isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1
    ):
        raise ContractError(f"column {name!r}: max_length must be a positive whole number")
    numeric = column_type in {"integer", "number"}
    if numeric and values is not None and not all(_is_number(value) for value in values):
        raise ContractError(f"column {name!r}: the values of a numeric column must be numbers")
    return ColumnSpec(
        name=name,
        type=column_type,
        values=tuple(values) if values is not None else None,
        min=raw.get("min"),
        max=raw.get("max"),
        nullable=nullable,
        max_null_fraction=max_null_fraction if nullable else 0.0,
        unique=bool(raw.get("unique", False)),
        max_length=max_length,
    )


def _derived_feature(raw: dict[str, Any], columns: dict[str, ColumnSpec]) -> DerivedFeature:
    name, kind = raw.get("name"), raw.get("kind")
    if not name or kind not in DERIVED_KINDS:
        raise ContractError(f"derived feature {raw!r} needs a name and a kind from {sorted(DERIVED_KINDS)}")
    options = {k: v for k, v in raw.items() if k not in {"name", "kind"}}
    referenced = [options.get(key) for key in ("column", "numerator", "denominator", "fallback")]
    referenced += list(options.get("columns", []))
    missing = [c for c in referenced if c is not None and c not in columns]
    if missing:
        raise ContractError(f"derived feature {name!r} uses undeclared columns {missing}")
    return DerivedFeature(name=name, kind=kind, options=options)


def parse_contract(text: str, source: str) -> Contract:
    """Build a :class:`Contract` from YAML text, with errors that name the broken part."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ContractError(f"contract {source} is not valid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ContractError(f"contract {source} must be a YAML mapping")
    try:
        columns = {name: _column_spec(name, spec or {}) for name, spec in document["columns"].items()}
        label = document["label"]
        contract = Contract(
            name=document["name"],
            id_column=document["id_column"],
            label_column=label["column"],
            positive_label=str(label["positive"]),
            negative_label=str(label["negative"]),
            extra_columns=document.get("extra_columns", "reject"),
            min_training_rows=int(document.get("min_training_rows", 100)),
            label_leakage_auc=float(document.get("label_leakage_auc", 0.99)),
            columns=columns,
            derived_features=tuple(_derived_feature(raw, columns) for raw in document.get("derived_features", [])),
            fingerprint=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            source=source,
        )
    except KeyError as error:
        raise ContractError(f"contract {source} lacks the required key {error}") from error
    except (ContractError, TypeError, AttributeError) as error:
        raise ContractError(f"contract {source}: {error}") from error
    for required in (contract.id_column, contract.label_column):
        if required not in columns:
            raise ContractError(f"contract {source}: {required!r} is not among its columns")
    if contract.extra_columns not in EXTRA_COLUMN_POLICIES:
        raise ContractError(f"contract {source}: extra_columns must be one of {sorted(EXTRA_COLUMN_POLICIES)}")
    return contract


def load_contract(reference: str) -> Contract:
    """Load a bundled contract by name (``telco_churn``) or any contract file by path."""
    bundled = resources.files("churn").joinpath("contracts", f"{reference}.yaml")
    if "/" not in reference and not reference.endswith((".yaml", ".yml")) and bundled.is_file():
        return parse_contract(bundled.read_text(encoding="utf-8"), f"bundled:{reference}")
    path = Path(reference).expanduser()
    if not path.is_file():
        raise ContractError(f"contract {reference!r} is neither a bundled contract nor an existing file")
    return parse_contract(path.read_text(encoding="utf-8"), str(path.resolve()))
