"""Each phase's result, kept as JSON in the run folder: an audit trail a person can read.

XCom carries the same records between tasks; the manifests outlive the Airflow metadata
database and let the demo report what a run did. :func:`run_phase` is the envelope every
phase runs in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from churn.errors import PhaseError, PhaseSkipped, left_to_airflow
from churn.handoffs import RESULT_TYPES, Handoff, PhaseFailure, RunContext, SkippedPhases, summary
from churn.settings import redact_text
from churn.storage import writing_atomically

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

logger = logging.getLogger(__name__)
# Each phase's (or step's) account of what it did, at INFO, which Airflow's task log shows.
summaries = logging.getLogger("churn")
ResultT = TypeVar("ResultT")
FAILURE = "failed"
SKIPPED = "skipped"


def manifest_path(run_dir: ObjectStoragePath, name: str) -> ObjectStoragePath:
    return run_dir / "manifests" / f"{name}.json"


def write_manifest(run_dir: ObjectStoragePath, name: str, record: Handoff) -> None:
    """Store ``record`` as ``<run_dir>/manifests/<name>.json``, atomically."""
    with writing_atomically(manifest_path(run_dir, name)) as partial:
        partial.write_text(json.dumps(record.model_dump(mode="json"), indent=2, sort_keys=True), encoding="utf-8")


def read_manifests(run_dir: ObjectStoragePath) -> dict[str, Any]:
    """The run's recorded phase results (and failure, under ``failed``; phases skipped, under
    ``skipped``), as typed records."""
    record_types: dict[str, type[Handoff]] = {**RESULT_TYPES, FAILURE: PhaseFailure, SKIPPED: SkippedPhases}
    return {
        name: record_type.model_validate_json(manifest_path(run_dir, name).read_text(encoding="utf-8"))
        for name, record_type in record_types.items()
        if manifest_path(run_dir, name).is_file()
    }


def forget_phases_from(run_dir: ObjectStoragePath, phase: str) -> None:
    """Delete the manifests of ``phase`` and every later phase, and any failure record.

    Clearing a task in Airflow reruns it under the same run id, in the same folder; what
    the earlier attempt recorded for this phase and the phases after it is stale until they
    run again, so the folder must not keep claiming it. A record of skipped phases is stale
    when one of them is forgotten.
    """
    phases = list(RESULT_TYPES)
    forgotten = phases[phases.index(phase) :]
    for stale in [*forgotten, FAILURE]:
        manifest_path(run_dir, stale).unlink(missing_ok=True)
    skipped = manifest_path(run_dir, SKIPPED)
    if skipped.is_file() and set(forgotten) & set(
        SkippedPhases.model_validate_json(skipped.read_text(encoding="utf-8")).phases
    ):
        skipped.unlink(missing_ok=True)


def run_phase(
    phase: str, run: RunContext, work: Callable[[], ResultT], *, starts: bool = True, finishes: bool = True
) -> ResultT:
    """Run one phase's ``work`` for ``run``: forget stale records, record why it failed if it
    does, and store its result as the phase's manifest.

    An error a retry cannot fix is re-raised as a :class:`~churn.errors.PhaseError` (from
    the original, which the failure record names), so Airflow fails the task at once; only
    outages (:func:`~churn.errors.is_transient`) and Airflow's own exceptions go on as they
    are, to Airflow's retries and rules.

    A phase run as several tasks (scoring: plan, partitions, publish) marks the task that
    ``starts`` it, which forgets the stale records of this phase and the later ones, and the
    one that ``finishes`` it, which stores the manifest. Every other step forgets the phase's
    own result, which its rerun makes stale; the finishing step runs only once every earlier
    step succeeded, so it also forgets the failures that retries of those steps left behind.
    Recording a failure never hides the failure itself. A phase with nothing useful to do
    raises :class:`~churn.errors.PhaseSkipped`: the phases it skips and why are recorded
    under ``skipped`` and logged, not as a failure, and Airflow marks the task skipped.
    Each step that succeeds logs its result's :func:`~churn.handoffs.summary`, passwords
    masked, to the ``churn`` logger: a few lines in words at the end of the task's log.
    """
    if starts:
        forget_phases_from(run.run_dir, phase)
    else:
        manifest_path(run.run_dir, phase).unlink(missing_ok=True)
        if finishes:
            manifest_path(run.run_dir, FAILURE).unlink(missing_ok=True)
    try:
        result = work()
    except PhaseSkipped as skip:
        write_manifest(run.run_dir, SKIPPED, skip.skipped)
        summaries.info("%s", redact_text(skip.skipped.summary()))
        raise
    except Exception as error:
        failure = PhaseFailure(phase=phase, error_type=type(error).__name__, error=redact_text(str(error)))
        try:
            write_manifest(run.run_dir, FAILURE, failure)
        except OSError as unrecorded:  # e.g. run storage unreachable: the task's error matters more
            logger.warning("could not record the failure of %s in %s: %s", phase, run.run_dir, unrecorded)
        if left_to_airflow(error):
            raise
        raise PhaseError(phase, failure.error_type, failure.error) from error
    if finishes:
        write_manifest(run.run_dir, phase, result)
    account = summary(result)
    if account:
        summaries.info("%s", redact_text(account))
    return result
