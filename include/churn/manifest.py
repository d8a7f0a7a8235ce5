"""Each phase's result, kept as JSON in the run folder: an audit trail a person can read.

XCom carries the same small dictionaries between tasks; the manifests outlive the
Airflow metadata database and let the demo report what a run did.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from churn.settings import redact_text


@contextmanager
def writing_atomically(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to, renamed onto ``path`` once the write is
    done, so readers see the old file or the whole new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    yield partial
    os.replace(partial, path)


def write_manifest(run_dir: Path, phase: str, result: dict[str, Any]) -> dict[str, Any]:
    """Store ``result`` as ``<run_dir>/manifests/<phase>.json`` atomically and return it."""
    with writing_atomically(run_dir / "manifests" / f"{phase}.json") as partial:
        partial.write_text(json.dumps(result, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return result


def read_manifests(run_dir: Path) -> dict[str, dict[str, Any]]:
    """All phase results of a run, keyed by phase."""
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted((run_dir / "manifests").glob("*.json"))
    }


@contextmanager
def recording_failure(run_dir: Path, phase: str) -> Iterator[None]:
    """Record why ``phase`` failed as ``manifests/failed.json``, then let the error go on.

    The message is the one the phase raised, written for people, so the demo and anyone
    reading the run folder can say what to fix without a stack trace.
    """
    failure = run_dir / "manifests" / "failed.json"
    try:
        yield
    except Exception as error:
        write_manifest(
            run_dir,
            "failed",
            {"phase": phase, "error_type": type(error).__name__, "error": redact_text(str(error))},
        )
        raise
    # A retry that succeeds clears the record its earlier try left.
    if failure.is_file() and json.loads(failure.read_text(encoding="utf-8"))["phase"] == phase:
        failure.unlink()
