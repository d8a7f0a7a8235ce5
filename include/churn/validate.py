"""Data Validation: run each snapshot's contract suites with Great Expectations.

A landed file that cannot be read at all (empty, binary, another encoding, damaged
Parquet) is reported like any other broken rule, in the message and in the Data Docs.
Readable snapshots are validated in two stages (see :mod:`churn.expectations`); only a
snapshot that passes the text stage is typed and checked again. Every stage's result is
rendered into Great Expectations Data Docs (HTML) in the run folder, passed or failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import great_expectations as gx
import pandas as pd

from churn.contract import Contract, load_contract
from churn.errors import PermanentError
from churn.expectations import text_stage_expectations, typed_stage_expectations, unreadable_file_expectation
from churn.handoffs import IngestResult, ValidatedSnapshot, ValidateResult, accepts_handoffs
from churn.manifest import run_phase
from churn.sources import SourceError
from churn.storage import read_snapshot_file, write_parquet_atomically

EXAMPLES_PER_FAILURE = 5
DATA_DOCS_SITE = "run_report"


class ContractViolation(PermanentError):
    """A snapshot broke its data contract; the message lists every failed expectation."""

    def __init__(self, message: str, report: Path) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Snapshot:
    """A landed snapshot to validate: its name, file, whether it must carry the label, and its origin."""

    name: str
    path: Path
    file_format: str
    labelled: bool
    source: str


def text_view(raw: pd.DataFrame) -> pd.DataFrame:
    """Every column as trimmed text, blank cells as missing: how a person reads the file."""
    text = raw.astype("string").apply(lambda column: column.str.strip())
    return text.mask(text == "")


def conform(text: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """Type the contract's numeric columns; call only once the text stage has passed."""
    typed = text.copy()
    for spec in contract.columns.values():
        if spec.name in typed and spec.is_numeric:
            numbers = pd.to_numeric(typed[spec.name])
            typed[spec.name] = numbers.astype("Int64") if spec.type == "integer" else numbers.astype("float64")
    return typed


def find_label_leaks(typed: pd.DataFrame, contract: Contract) -> list[str]:
    """Features that on their own separate the label (near) perfectly: likely leakage.

    Categories are scored by their in-sample churn rate, so columns with nearly one value
    per row (free text, ids) are skipped rather than flagged for memorising the rows.
    """
    from sklearn.metrics import roc_auc_score

    labels = (typed[contract.label_column] == contract.positive_label).to_numpy()
    if labels.all() or not labels.any():
        return []
    leaks = []
    for column in contract.feature_columns:
        if column not in typed:
            continue
        values = typed[column]
        if contract.columns[column].is_numeric:
            numbers = values.astype("float64")
            score = numbers.fillna(numbers.min() - 1 if numbers.notna().any() else 0.0)
        elif values.nunique(dropna=False) <= len(values) // 2:
            groups = values.astype(object).where(values.notna(), "<blank>")
            score = groups.map(pd.Series(labels).groupby(groups.to_numpy()).mean())
        else:
            continue
        auc = float(roc_auc_score(labels, score.to_numpy(dtype="float64")))
        separation = max(auc, 1.0 - auc)
        if separation >= contract.label_leakage_auc:
            leaks.append(
                f"column {column!r}: label leakage: on its own it predicts {contract.label_column!r} with "
                f"ROC AUC {separation:.3f} (limit {contract.label_leakage_auc}); is it recorded after the outcome?"
            )
    return leaks


def _context(report_dir: Path) -> Any:
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        progress_bars=ProgressBarsConfig(globally=False),
        analytics_enabled=False,
        data_docs_sites={
            DATA_DOCS_SITE: {
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(report_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _run_stage(context: Any, name: str, frame: pd.DataFrame, expectations: list[Any]) -> Any:
    """Validate ``frame`` with one suite through a Checkpoint that updates the Data Docs."""
    data_source = context.data_sources.add_pandas(f"{name}_source")
    batch = data_source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("whole_snapshot")
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{name}_checkpoint",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs", site_names=[DATA_DOCS_SITE])],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    return next(iter(result.run_results.values()))


def describe_failure(result: Any) -> str:
    """One line that says which expectation failed, on which column, with example values."""
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in {"column", "batch_id", "result_format"}}
    column = config.kwargs.get("column")
    subject = f"column {column!r}" if column else "table"
    rule = f"{config.type}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"
    details = result.result or {}
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"{subject}: {rule} could not run: {result.exception_info.get('exception_message')}"
    mismatched = (details.get("details") or {}).get("mismatched")
    if mismatched:
        unexpected = sorted(mismatched.get("unexpected") or [])
        delimiter_hint = next(
            (
                f" (a header like {name[:40]!r} suggests the file uses {sep!r} as its delimiter, not ',')"
                for name in unexpected
                for sep in (";", "\t", "|")
                if sep in name
            ),
            "",
        )
        return (
            f"{subject}: columns differ from the contract: missing {sorted(mismatched.get('missing') or [])}, "
            f"unexpected {unexpected}{delimiter_hint}"
        )
    if config.type == "expect_column_values_to_not_be_null":
        return f"{subject}: {rule} failed: {details.get('unexpected_count')} rows are blank"
    if "unexpected_count" in details:
        examples = list(dict.fromkeys(str(v) for v in details.get("partial_unexpected_list") or []))
        shown = ", ".join(repr(v) for v in examples[:EXAMPLES_PER_FAILURE])
        return f"{subject}: {rule} failed for {details['unexpected_count']} rows, e.g. {shown}"
    return f"{subject}: {rule} failed; observed {details.get('observed_value')!r}"


def validate_snapshots(
    snapshots: list[Snapshot], contract: Contract, run_dir: Path
) -> dict[str, ValidatedSnapshot]:
    """Validate each snapshot and write its typed copy.

    Raises :class:`ContractViolation` naming every unreadable file and failed expectation
    when any snapshot fails; the typed copies are written only when all of them pass.
    """
    report_dir = run_dir / "data_docs"
    context = _context(report_dir)
    failures: list[str] = []
    typed_frames: dict[str, pd.DataFrame] = {}
    counted: dict[str, int] = {}
    for snapshot in snapshots:
        name, labelled = snapshot.name, snapshot.labelled
        described = f"{name} snapshot ({snapshot.source})"
        try:
            text = text_view(read_snapshot_file(snapshot.path, snapshot.file_format))
        except SourceError as error:
            failures.append(f"{described}: cannot be read: {error}")
            _run_stage(context, f"{name}_unreadable", pd.DataFrame(), [unreadable_file_expectation(failures[-1])])
            continue
        if not labelled and contract.label_column in text:
            text = text.drop(columns=[contract.label_column])
        stage = _run_stage(
            context, f"{name}_text", text, text_stage_expectations(contract, list(text.columns), labelled=labelled)
        )
        counted[name] = len(stage.results)
        if stage.success:
            typed = conform(text, contract)
            stage = _run_stage(
                context, f"{name}_typed", typed, typed_stage_expectations(contract, labelled=labelled)
            )
            counted[name] += len(stage.results)
            typed_frames[name] = typed
            if stage.success and labelled:
                failures += [f"{described}: {leak}" for leak in find_label_leaks(typed, contract)]
        failures += [f"{described}: {describe_failure(r)}" for r in stage.results if not r.success]
    report = report_dir / "index.html"
    if failures:
        raise ContractViolation(
            f"data contract {contract.name!r} failed with {len(failures)} problem(s):\n  - "
            + "\n  - ".join(failures)
            + (f"\nFull report: {report}" if report.is_file() else ""),
            report,
        )
    return {
        name: ValidatedSnapshot(
            rows=len(frame),
            expectations=counted[name],
            path=write_parquet_atomically(frame, run_dir / "validated" / f"{name}.parquet"),
        )
        for name, frame in typed_frames.items()
    }


@accepts_handoffs
def run_validate(landed: IngestResult) -> ValidateResult:
    """Validate the run's landed snapshots against its contract; record rows, checks and the report."""
    run = landed.run

    def validate() -> ValidateResult:
        contract = load_contract(run.contract)
        snapshots = [
            Snapshot(name, snapshot.path, snapshot.format, labelled=name == "training", source=snapshot.source)
            for name, snapshot in (("training", landed.training), ("scoring", landed.scoring))
        ]
        checked = validate_snapshots(snapshots, contract, run.run_dir)
        return ValidateResult(
            run=run,
            contract_name=contract.name,
            contract_sha256=contract.fingerprint,
            report=run.run_dir / "data_docs" / "index.html",
            **checked,
        )

    return run_phase("validate", run, validate)
