from pathlib import Path

import pytest

from churn.manifest import read_manifests, recording_failure, write_manifest


def test_manifests_round_trip(tmp_path: Path):
    write_manifest(tmp_path, "ingest", {"rows": 3})
    assert read_manifests(tmp_path) == {"ingest": {"rows": 3}}
    assert not list(tmp_path.rglob("*.partial"))


def test_a_failing_phase_records_its_message_and_still_raises(tmp_path: Path):
    with pytest.raises(ValueError, match="tenure"), recording_failure(tmp_path, "validate"):
        raise ValueError("column 'tenure' holds text")
    failed = read_manifests(tmp_path)["failed"]
    assert failed == {"phase": "validate", "error_type": "ValueError", "error": "column 'tenure' holds text"}


def test_a_successful_retry_clears_its_failure(tmp_path: Path):
    with pytest.raises(RuntimeError), recording_failure(tmp_path, "score"):
        raise RuntimeError("warehouse down")
    with recording_failure(tmp_path, "score"):
        pass
    assert "failed" not in read_manifests(tmp_path)
