"""Data Validation: run each snapshot's contract suites with Great Expectations.

A landed file that cannot be read at all (empty, binary, another encoding, damaged
Parquet) is reported like any other broken rule, in the message and in the Data Docs.
Readable snapshots are validated in two stages (see :mod:`churn.expectations`); only a
snapshot that passes the text stage is typed and checked again. Every stage's result is
rendered into Great Expectations Data Docs (HTML) in the run folder, passed or failed.

A snapshot is read and checked ``validation.chunk_rows`` rows at a time, so memory holds one
chunk and the id column, never the table, however many customers there are. The chunks'
results are combined into one result per expectation and stage, as if the snapshot had been
checked whole (how, and why, is in :mod:`churn.expectations`). A failure names its first
offending rows by their number in the file: 1 is the first row under the header.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import great_expectations as gx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from great_expectations.core import ExpectationSuiteValidationResult
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

from churn.contract import CUSTOMER_ID_LENGTH, Contract, joined_text, load_contract
from churn.data_docs import CheckedSnapshot, make_offline
from churn.errors import PermanentError, shortened
from churn.expectations import (
    LARGEST_FLOAT,
    RESULT_EXAMPLES,
    UNIQUENESS,
    chunk_failure_is_final,
    combine_chunk_results,
    judged_on_whole_snapshot,
    number_patterns,
    text_stage_expectations,
    typed_stage_expectations,
    unreadable_file_expectation,
    whole_snapshot_result,
)
from churn.handoffs import (
    IngestResult,
    RunContext,
    ShrinkAllowed,
    ValidatedSnapshot,
    ValidateResult,
    accepts_handoffs,
    shrinkage,
)
from churn.manifest import run_phase
from churn.settings import (
    DATA_DOCS_FOLDER,
    DATA_DOCS_INDEX,
    PipelineConfig,
    Settings,
    ShrinkGuardConfig,
    load_settings,
)
from churn.sources import SourceError
from churn.storage import (
    copy_atomically,
    copy_folder,
    parquet_schema,
    read_snapshot_chunks,
    write_parquet_batches_atomically,
)
from churn.warehouse import open_scores_table, rows_to_compare

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

logger = logging.getLogger(__name__)
EXAMPLES_PER_FAILURE = 5
# Integers at or beyond 2**63 do not fit the typed copy's 64-bit integers (the text stage
# refuses more than 18 digits, so none reaches here unreported).
LARGEST_INTEGER = 2.0**63
DATA_DOCS_SITE = "run_report"
# What each chunk is asked for: counts (to add up) and a few values. Offending rows' positions
# are asked for again, with SUMMARY, only on chunks that have offending rows.
CHUNK_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": RESULT_EXAMPLES}
DETAIL_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": RESULT_EXAMPLES}


class ContractViolation(PermanentError):
    """A snapshot broke its data contract; the message lists every failed expectation."""

    def __init__(self, message: str, report: ObjectStoragePath) -> None:
        super().__init__(message)
        self.report = report


class SnapshotShrank(PermanentError):
    """The scoring snapshot is much smaller than the warehouse's scores of the date (or of the
    latest date scored before it): likely a truncated export, which would replace a day's scores."""


def check_shrink(
    scoring_rows: int,
    compared: tuple[date, int] | None,
    run: RunContext,
    guard: ShrinkGuardConfig,
    *,
    source: str,
    table: str,
) -> ShrinkAllowed | None:
    """None when ``scoring_rows`` are no more than ``guard.max_drop_fraction`` fewer than the
    ``compared`` (date, rows) of the warehouse, or there is nothing to compare with. A larger
    drop is refused with both counts and the override, unless the run allows it
    (``run.allow_shrink``): then what was allowed, for the manifest and the log."""
    if compared is None:
        return None
    compared_date, compared_rows = compared
    drop = 1 - scoring_rows / compared_rows
    if drop <= guard.max_drop_fraction:
        return None
    if run.allow_shrink:
        allowed = ShrinkAllowed(
            scoring_rows=scoring_rows,
            compared_date=compared_date,
            compared_rows=compared_rows,
            max_drop_fraction=guard.max_drop_fraction,
        )
        logger.warning("validate: %s", allowed.describe())
        return allowed
    which = (
        "the scores this run would replace"
        if compared_date == run.score_date
        else f"the latest date scored before {run.score_date}"
    )
    raise SnapshotShrank(
        f"{source} has {scoring_rows:,} {'row' if scoring_rows == 1 else 'rows'}, "
        f"{shrinkage(scoring_rows, compared_rows)} than the {compared_rows:,} rows {table} holds for "
        f"{compared_date} ({which}); a drop of more than {guard.max_drop_fraction:.0%} is refused "
        "(shrink_guard.max_drop_fraction in pipeline.yaml): a truncated export would replace a day's scores. "
        "The warehouse is unchanged. If the snapshot is complete, trigger the run again with the run parameter "
        "allow_shrink set to true"
    )


@dataclass(frozen=True)
class Snapshot:
    """A landed snapshot to validate: its name, file, whether it must carry the label, and its origin."""

    name: str
    path: ObjectStoragePath
    file_format: str
    labelled: bool
    source: str


def text_view(raw: pd.DataFrame) -> pd.DataFrame:
    """Every column as trimmed text, blank cells as missing: how a person reads the file."""
    text = raw.astype("string").apply(lambda column: column.str.strip())
    return text.mask(text == "")


def conform(text: pd.DataFrame, contract: Contract, decimal: str = ".") -> pd.DataFrame:
    """Type the contract's numeric (written with ``decimal`` as the decimal mark) and boolean
    columns. A cell that is not a value of its type (text in a number column, a fraction or an
    integer too large in an integer column, an unknown boolean spelling) becomes missing: the
    text stage reports it, and the typed stage judges the rest. Ids stay as written: "00123"
    is its own customer, not 123."""
    typed = text.copy()
    booleans = contract.csv.booleans
    for spec in contract.columns.values():
        if spec.name not in typed:
            continue
        if spec.is_numeric and spec.role != "id":
            written = typed[spec.name]
            if decimal != ".":
                written = written.str.replace(decimal, ".", regex=False)
            parsed = pd.to_numeric(written, errors="coerce")
            numbers = pd.Series(parsed.to_numpy(dtype="float64", na_value=np.nan), index=typed.index)
            if spec.type == "integer":
                whole = (numbers % 1 == 0) & (numbers.abs() < LARGEST_INTEGER)
                typed[spec.name] = numbers.where(whole).astype("Int64")
            else:
                typed[spec.name] = numbers
        elif spec.type == "boolean":
            typed[spec.name] = typed[spec.name].map(booleans.get, na_action="ignore").astype("boolean")
    return typed


def label_class_minimum(contract: Contract, config: PipelineConfig) -> int:
    """Rows each label class needs in a training snapshot: enough for training's
    ``training.cv_folds`` stratified folds in the training split, which keeps
    1 - ``split.test_fraction`` of each class, with one more for the test split; or the
    contract's ``min_label_class_rows`` when that asks for more."""
    folds_need = math.ceil(config.training.cv_folds / (1 - config.split.test_fraction)) + 1
    return max(folds_need, contract.min_label_class_rows or 0)


def label_problems(typed: pd.DataFrame, contract: Contract, class_minimum: int) -> list[str]:
    """A training snapshot's label problems the suites cannot see: a class with fewer than
    ``class_minimum`` rows (see :func:`label_class_minimum`), and features that on their own
    separate the classes (near) perfectly, likely leakage.

    Categories are scored by their in-sample churn rate, so columns with nearly one value
    per row (free text, ids) are skipped rather than flagged for memorising the rows.
    """
    from sklearn.metrics import roc_auc_score

    label = contract.label
    labels = label.is_positive(typed[label.column])
    if labels.all() or not labels.any():
        missing = "negative" if labels.all() else "positive"
        return [
            f"column {label.column!r}: no row has a {missing} label ({label.describe()}): a model needs "
            "customers of both classes to learn from"
        ]
    rare = min(("positive", int(labels.sum())), ("negative", int((~labels).sum())), key=lambda c: c[1])
    if rare[1] < class_minimum:
        return [
            f"column {label.column!r}: only {rare[1]:,} rows have a {rare[0]} label ({label.describe()}); "
            f"each class needs at least {class_minimum:,}, enough for training's cross-validation folds "
            "(training.cv_folds in pipeline.yaml, on the training split) or the contract's min_label_class_rows"
        ]
    leaks = []
    for column in contract.feature_columns:
        if column not in typed:
            continue
        values = typed[column]
        if contract.columns[column].modelled_as == "numeric":
            numbers = pd.Series(values.to_numpy(dtype="float64", na_value=np.nan))
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
                f"column {column!r}: label leakage: on its own it predicts {label.column!r} with "
                f"ROC AUC {separation:.3f} (limit {contract.label_leakage_auc}); is it recorded after the "
                "outcome? If so, declare it `role: leak` in the contract to keep it out of the model"
            )
    return leaks


def stored_id_type_problems(snapshot: Snapshot, contract: Contract) -> list[str]:
    """A Parquet snapshot's id columns stored as numbers with fractions (floating-point or
    decimal with places): as text they would read "1.0", not the id "1", and floats round
    integers past 2**53, so one customer's scores would land on another's id."""
    if snapshot.file_format != "parquet":
        return []
    schema = parquet_schema(snapshot.path)
    stored = {column: schema.field(column).type for column in contract.id_columns if column in schema.names}
    return [
        f"customer id column {column!r} is stored as {kind} numbers: an id must be text or an integer, never "
        "a number with a fraction (1.0 would become the id '1.0', and large ones are rounded); export it as "
        "text or an integer"
        for column, kind in stored.items()
        if pa.types.is_floating(kind) or (pa.types.is_decimal(kind) and kind.scale > 0)
    ]


def overlong_ids(ids: pa.ChunkedArray, contract: Contract) -> list[str]:
    """The problem, if any, of customer ids longer than the warehouse's key holds."""
    too_long = pc.fill_null(pc.greater(pc.utf8_length(ids), CUSTOMER_ID_LENGTH), False).combine_chunks()
    count = pc.sum(too_long).as_py() or 0
    if not count:
        return []
    rows = pc.indices_nonzero(too_long)[:EXAMPLES_PER_FAILURE].to_pylist()
    shown = ", ".join(repr(shortened(value)) for value in ids.take(rows).to_pylist())
    where = _at_rows({"partial_unexpected_index_list": rows, "unexpected_count": count})
    return [
        f"customer id {' + '.join(contract.id_columns)!r}: {count} ids are longer than the warehouse's "
        f"{CUSTOMER_ID_LENGTH} characters, e.g. {shown}{where}"
    ]


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
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder", "show_how_to_buttons": False},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


class ChunkedStage:
    """One suite run a chunk at a time: :meth:`check` each chunk, then :meth:`finish` combines
    the chunks' results into the snapshot's (see :mod:`churn.expectations`) and renders it into
    the Data Docs.

    Each chunk is asked only for counts and a few values (BASIC); a chunk with offending rows
    is asked again, for those expectations, with SUMMARY, which adds the rows' positions, until
    the report has its examples. (Asked of every chunk, SUMMARY costs half as much time again,
    offending rows or not.)
    """

    def __init__(
        self,
        context: Any,
        checked: CheckedSnapshot,
        name: str,
        expectations: list[Any],
        notes: list[str] | None = None,
    ) -> None:
        self.context, self.name, self.expectations, self.notes = context, name, expectations, notes
        self.checked = checked
        self.batch_definition = (
            context.data_sources.add_pandas(f"{name}_source")
            .add_dataframe_asset(checked.asset_name)
            .add_batch_definition_whole_dataframe("chunk")
        )
        # Copies: an expectation belongs to one suite, and this one never reaches the Data Docs.
        self.chunk_suite = gx.ExpectationSuite(
            name=f"{name}_chunk",
            expectations=[copy.copy(e) for e in expectations if not judged_on_whole_snapshot(e)],
        )
        self.chunk_expectations = {_rule(e.configuration): e for e in self.chunk_suite.expectations}
        self.chunk_results: dict[str, list[Any]] = {rule: [] for rule in self.chunk_expectations}
        # The key each uniqueness check needs, a column or a composite key's columns joined as
        # text: kept whole, as Arrow, not the table.
        self.keys: dict[tuple[str, ...], list[pa.Array]] = {
            key_columns(e): [] for e in expectations if isinstance(e, UNIQUENESS)
        }
        self.rows = 0
        self.failed_for_good = False
        self.first_meta: dict[str, Any] = {}

    def check(self, frame: pd.DataFrame) -> None:
        """Check one chunk, indexed by its rows' positions in the file."""
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        checked = batch.validate(self.chunk_suite, result_format=CHUNK_RESULT_FORMAT)
        self.first_meta = self.first_meta or checked.meta
        for result in checked.results:
            rule = _rule(result.expectation_config)
            expectation, earlier = self.chunk_expectations[rule], self.chunk_results[rule]
            known_rows = sum(len(r.result.get("partial_unexpected_index_list", [])) for r in earlier)
            if (result.result or {}).get("unexpected_count") and known_rows < RESULT_EXAMPLES:
                result = batch.validate(expectation, result_format=DETAIL_RESULT_FORMAT)
            earlier.append(result)
            self.failed_for_good |= chunk_failure_is_final(expectation, result)
        for columns, parts in self.keys.items():
            parts.append(pa.array(joined_text(frame, list(columns)), type=pa.large_string()))
        self.rows += len(frame)

    def finish(self) -> Any:
        """The snapshot's result, also rendered into the Data Docs."""
        suite = self.context.suites.add(
            gx.ExpectationSuite(name=self.name, expectations=self.expectations, notes=self.notes or None)
        )
        results = [
            whole_snapshot_result(expectation, rows=self.rows, column=self.key(key_columns(expectation)))
            if judged_on_whole_snapshot(expectation)
            else combine_chunk_results(expectation, self.chunk_results[_rule(expectation.configuration)])
            for expectation in suite.expectations
        ]
        passed = sum(result.success for result in results)
        run_id = RunIdentifier(run_name=self.checked.run_name, run_time=datetime.now(UTC))
        combined = ExpectationSuiteValidationResult(
            success=passed == len(results),
            results=results,
            suite_name=self.name,
            statistics={
                "evaluated_expectations": len(results),
                "successful_expectations": passed,
                "unsuccessful_expectations": len(results) - passed,
                "success_percent": 100 * passed / len(results) if results else None,
            },
            # The first chunk's batch markers (load time, fingerprint) would describe it alone;
            # the pages name the whole snapshot's file instead of the chunk's data frame.
            meta=self.checked.result_meta(
                {
                    **{k: v for k, v in self.first_meta.items() if k != "batch_markers"},
                    "run_id": run_id,
                    "validation_time": run_id.run_time,
                },
                rows=self.rows,
            ),
        )
        suite_key = ExpectationSuiteIdentifier(name=self.name)
        result_key = ValidationResultIdentifier(
            expectation_suite_identifier=suite_key, run_id=run_id, batch_identifier="whole_snapshot"
        )
        self.context.validation_results_store.set(result_key, combined)
        self.context.build_data_docs(site_names=[DATA_DOCS_SITE], resource_identifiers=[result_key, suite_key])
        return combined

    def key(self, columns: tuple[str, ...]) -> pa.ChunkedArray | None:
        """The whole snapshot's values of a key that a uniqueness check gathered, else None."""
        parts = self.keys.get(columns)
        return None if parts is None else pa.chunked_array(parts, type=pa.large_string())


def key_columns(expectation: Any) -> tuple[str, ...]:
    """The columns an expectation is about: its column, or its list of them."""
    if getattr(expectation, "column_list", None):
        return tuple(expectation.column_list)
    return (expectation.column,) if getattr(expectation, "column", None) else ()


def about_ids(config: Any, contract: Contract) -> bool:
    """Whether an expectation checks one of the contract's id columns."""
    columns = config.kwargs.get("column_list") or [config.kwargs.get("column")]
    return not set(columns).isdisjoint(contract.id_columns)


def _rule(config: Any) -> str:
    """An expectation's type and arguments: what pairs a chunk's result with its expectation."""
    return repr((config.type, sorted((k, v) for k, v in config.kwargs.items() if k != "batch_id")))


def describe_failure(result: Any, ids: pa.ChunkedArray | None = None) -> str:
    """One line that says, in words, which rule failed on which column, how often, with example
    values and the first offending rows, with their customer ids when ``ids`` (the snapshot's
    ids in file order) is given; the expectation's technical name comes last."""
    config = result.expectation_config
    column = config.kwargs.get("column")
    subject = f"column {column!r}" if column else "table"
    technical = f"[{config.type}]"
    details = result.result or {}
    if result.exception_info and result.exception_info.get("raised_exception"):
        why = shortened(str(result.exception_info.get("exception_message")), 500)
        return f"{subject}: the check could not run: {why} {technical}"
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
            f"unexpected {[shortened(name) for name in unexpected]}{delimiter_hint} {technical}"
        )
    rule = rule_in_words(config)
    if config.type == "expect_column_values_to_not_be_null":
        blank = f"{details.get('unexpected_count'):,} rows are blank"
        return f"{subject} {rule}: {blank}{_at_rows(details, ids)} {technical}"
    if "unexpected_count" in details:
        examples = list(dict.fromkeys(str(v) for v in details.get("partial_unexpected_list") or []))
        shown = ", ".join(repr(v) for v in examples[:EXAMPLES_PER_FAILURE])
        count = details["unexpected_count"]
        breaking = f"{count:,} {'row breaks' if count == 1 else 'rows break'} it"
        return f"{subject} {rule}: {breaking}, e.g. {shown}{_at_rows(details, ids)} {technical}"
    return f"{subject} {rule}: it has {details.get('observed_value')!r} {technical}"


def rule_in_words(config: Any) -> str:
    """What an expectation asks, as a person would say it: "must be a whole number"."""
    kwargs = config.kwargs
    match config.type:
        case "expect_column_values_to_match_regex":
            whole = kwargs["regex"] in {number_patterns(mark)["integer"] for mark in (".", ",")}
            mark = " (decimal mark ',')" if kwargs["regex"] in number_patterns(",").values() else ""
            return f"must be a whole number of at most 18 digits{mark}" if whole else f"must be a number{mark}"
        case "expect_column_values_to_be_in_set":
            allowed = list(kwargs["value_set"])
            shown = ", ".join(repr(value) for value in allowed[:12])
            return f"must be one of {shown}{', ...' if len(allowed) > 12 else ''}"
        case "expect_column_values_to_be_between":
            low, high = kwargs.get("min_value"), kwargs.get("max_value")
            # A number column's unbounded side is held to the largest float (see LARGEST_FLOAT).
            finite = " and finite" if LARGEST_FLOAT in (abs(low or 0), abs(high or 0)) else ""
            low = None if low == -LARGEST_FLOAT else low
            high = None if high == LARGEST_FLOAT else high
            if low is not None and high is not None:
                return f"must be between {low:g} and {high:g}"
            if low is None and high is None:
                return "must be a finite number"
            return f"must be at least {low:g}{finite}" if low is not None else f"must be at most {high:g}{finite}"
        case "expect_column_values_to_not_be_null":
            mostly = kwargs.get("mostly", 1.0)
            return "must not be blank" if mostly >= 1.0 else f"may be blank in at most {1 - mostly:.1%} of rows"
        case "expect_column_values_to_be_unique":
            return "must be unique"
        case "expect_compound_columns_to_be_unique":
            return f"{' + '.join(repr(c) for c in kwargs['column_list'])} must be unique together"
        case "expect_column_value_lengths_to_be_between":
            return f"must be at most {kwargs['max_value']} characters long"
        case "expect_table_row_count_to_be_between":
            return f"needs at least {kwargs['min_value']:,} rows"
    arguments = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k not in {"column", "batch_id"})
    return f"must pass {config.type}({arguments})"


def _at_rows(details: dict[str, Any], ids: pa.ChunkedArray | None = None) -> str:
    """Where the first offending rows are, numbered as in the file (1 is the first row under the
    header), with their customer ids when ``ids`` (the snapshot's, in file order) is given."""
    rows = (details.get("partial_unexpected_index_list") or [])[:EXAMPLES_PER_FAILURE]
    if not rows:
        return ""
    more = ", ..." if details["unexpected_count"] > len(rows) else ""
    where = f" (at rows {', '.join(str(row + 1) for row in rows)}{more}"
    if ids is None:
        return where + ")"
    named = ", ".join("blank" if value is None else repr(shortened(value)) for value in ids.take(rows).to_pylist())
    return f"{where}; customer ids {named}{more})"


def validate_snapshots(
    snapshots: list[Snapshot],
    contract: Contract,
    run_dir: ObjectStoragePath,
    chunk_rows: int | None = None,
    airflow_run_id: str | None = None,
) -> dict[str, ValidatedSnapshot]:
    """Validate each snapshot, ``chunk_rows`` rows at a time (default: the configured
    ``validation.chunk_rows``), and write its typed copy. The report names each snapshot's
    file and the Airflow run that checked it.

    Raises :class:`ContractViolation` naming every unreadable file and failed expectation
    when any snapshot fails; the typed copies are written only when all of them pass. Until
    then they are staged in a local temporary folder, one chunk at a time, so no snapshot is
    ever held whole and the run folder (local or object storage) sees only the final copies.
    The Data Docs, which Great Expectations writes to a local folder, are built there too, made
    to work without internet (see :mod:`churn.data_docs`) and copied into ``<run_dir>/data_docs``
    either way.
    """
    chunk_rows = chunk_rows or load_settings().config.validation.chunk_rows
    failures: list[str] = []
    staged: dict[str, ValidatedSnapshot] = {}
    with tempfile.TemporaryDirectory(prefix="churn-validate-") as staging:
        local_docs = Path(staging) / "data_docs"
        context = _context(local_docs)
        for snapshot in snapshots:
            described = f"{snapshot.name} snapshot ({snapshot.source})"
            checked = CheckedSnapshot(snapshot.name, snapshot.source, str(snapshot.path), airflow_run_id)
            try:
                problems, validated = validate_snapshot(
                    snapshot, contract, context, Path(staging), chunk_rows, checked
                )
            except SourceError as error:
                failures.append(f"{described}: cannot be read: {error}")
                unreadable = ChunkedStage(
                    context, checked, f"{snapshot.name}_unreadable", [unreadable_file_expectation(failures[-1])]
                )
                unreadable.check(pd.DataFrame())
                unreadable.finish()
                continue
            failures += [f"{described}: {problem}" for problem in problems]
            if validated is not None:
                staged[snapshot.name] = validated
        make_offline(local_docs)
        report = copy_folder(local_docs, run_dir / DATA_DOCS_FOLDER) / DATA_DOCS_INDEX
        if failures:
            raise ContractViolation(
                f"data contract {contract.name!r} failed with {len(failures)} problem(s):\n  - "
                + "\n  - ".join(failures)
                + (f"\nFull report: {report}" if report.is_file() else ""),
                report,
            )
        return {
            name: validated.model_copy(
                update={"path": copy_atomically(validated.path, run_dir / "validated" / f"{name}.parquet")}
            )
            for name, validated in staged.items()
        }


def validate_snapshot(
    snapshot: Snapshot, contract: Contract, context: Any, staging: Path, chunk_rows: int, checked: CheckedSnapshot
) -> tuple[list[str], ValidatedSnapshot | None]:
    """Validate one snapshot chunk by chunk in both stages, staging its typed copy in ``staging``.

    Returns every problem of both stages and, when there is none, its staged typed copy. The
    label checks (both classes present, no leakage) need the whole training table: they read
    the staged copy, as training snapshots are small (training learns from at most
    ``training.max_rows``); the scoring snapshot, the big one, is never held whole.
    """
    name, labelled = snapshot.name, snapshot.labelled
    id_problems = stored_id_type_problems(snapshot, contract)
    # The contract's decimal mark is its CSV files'; Parquet holds numbers, rendered with a point.
    decimal = contract.csv.decimal if snapshot.file_format == "csv" else "."
    chunks = snapshot_text_chunks(snapshot, contract, chunk_rows)
    first = next(chunks)  # its columns decide the text stage's column checks
    text = ChunkedStage(
        context,
        checked,
        f"{name}_text",
        text_stage_expectations(contract, list(first.columns), labelled=labelled, decimal=decimal),
        notes=[f"Column {column!r} is {why}." for column, why in contract.not_modelled.items()],
    )
    typed = ChunkedStage(
        context,
        checked,
        f"{name}_typed",
        typed_stage_expectations(contract, list(first.columns), labelled=labelled),
    )
    staged = staging / f"{name}.parquet"
    write_parquet_batches_atomically(
        (check_chunk(chunk, text, typed, contract, decimal) for chunk in itertools.chain([first], chunks)), staged
    )
    stages = [text.finish(), typed.finish()]
    ids = text.key(tuple(contract.id_columns))
    problems = [
        # The id columns' own problems show their values already.
        describe_failure(result, None if about_ids(result.expectation_config, contract) else ids)
        for stage in stages
        for result in stage.results
        if not result.success
    ]
    problems += overlong_ids(ids, contract) if ids is not None else []
    problems += id_problems
    if problems:
        return problems, None
    if labelled:
        minimum = label_class_minimum(contract, load_settings().config)
        problems += label_problems(pd.read_parquet(staged), contract, minimum)
    expectations = sum(len(stage.results) for stage in stages)
    return problems, ValidatedSnapshot(rows=text.rows, expectations=expectations, path=staged)


def snapshot_text_chunks(snapshot: Snapshot, contract: Contract, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The snapshot's chunks as text (see :func:`text_view`), without a scoring snapshot's label."""
    for raw in read_snapshot_chunks(snapshot.path, snapshot.file_format, chunk_rows, contract.csv):
        text = text_view(raw)
        if not snapshot.labelled and contract.label_column in text:
            text = text.drop(columns=[contract.label_column])
        yield text


def check_chunk(
    text: pd.DataFrame, text_stage: ChunkedStage, typed_stage: ChunkedStage, contract: Contract, decimal: str
) -> pd.DataFrame:
    """Check one chunk in both stages and return it typed, for the staged copy. Once either
    stage has failed for good the staged copy will be thrown away: no rows are staged then."""
    text_stage.check(text)
    typed = conform(text, contract, decimal)
    typed_stage.check(typed)
    return typed.iloc[:0] if text_stage.failed_for_good or typed_stage.failed_for_good else typed


@accepts_handoffs
def run_validate(landed: IngestResult, settings: Settings | None = None) -> ValidateResult:
    """Validate the run's landed snapshots against its contract, and the scoring snapshot's size
    against the warehouse's scores (:func:`check_shrink`); record rows, checks and the report."""
    run = landed.run

    def validate() -> ValidateResult:
        from churn.airflow_connections import task_settings

        used = settings or task_settings(warehouse=True)
        contract = load_contract(run.contract)
        # Read first: an unreachable warehouse fails (and is retried) before minutes of validation.
        with open_scores_table(used) as (engine, table):
            compared = rows_to_compare(engine, table, run.score_date)
        snapshots = [
            Snapshot(name, snapshot.path, snapshot.format, labelled=name == "training", source=snapshot.source)
            for name, snapshot in (("training", landed.training), ("scoring", landed.scoring))
        ]
        checked = validate_snapshots(snapshots, contract, run.run_dir, airflow_run_id=run.airflow_run_id)
        shrink_allowed = check_shrink(
            checked["scoring"].rows,
            compared,
            run,
            used.config.shrink_guard,
            source=f"scoring snapshot ({landed.scoring.source})",
            table=table.fullname,
        )
        return ValidateResult(
            run=run,
            contract_name=contract.name,
            contract_sha256=contract.fingerprint,
            report=run.run_dir / DATA_DOCS_FOLDER / DATA_DOCS_INDEX,
            shrink_allowed=shrink_allowed,
            **checked,
        )

    return run_phase("validate", run, validate)
