"""The validation report in a run folder: every page loads only files in that folder, and says
which snapshot file and which Airflow run it checked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from churn.data_docs import remote_assets
from churn.validate import ContractViolation, run_validate, validate_snapshots
from tests.conftest import ingest_for, land, run_parameters, write_csv

AIRFLOW_RUN_ID = "scheduled__2026-11-29T02:00:00+00:00"
# What a page loads (links to other pages and sites are not loaded).
LOADED = re.compile(r"<(?:script|link|img)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"")


def test_the_report_loads_only_files_in_the_run_folder_and_names_what_it_checked(
    snapshots, contract, tmp_path: Path
) -> None:
    broken = snapshots.training.head(300).copy()  # too few rows: the report shows a failure
    snapshot = land(write_csv(broken, tmp_path / "in" / "customers_2026-11.csv"), tmp_path, "training")
    with pytest.raises(ContractViolation):
        validate_snapshots([snapshot], contract, tmp_path, airflow_run_id=AIRFLOW_RUN_ID)

    report = tmp_path / "data_docs"
    html_pages = list(report.rglob("*.html"))
    assert len(html_pages) == 5  # the index, and each stage's suite and validation page
    for page in html_pages:
        html = page.read_text()
        assert remote_assets(html) == [], page
        for loaded in LOADED.findall(html):
            assert (page.parent / loaded).resolve().is_file(), (page, loaded)
            assert (page.parent / loaded).resolve().is_relative_to(report), (page, loaded)
        assert "__none__" not in html, page
    validation = next(report.glob("validations/training_text/*/*/*.html")).read_text()
    assert "training snapshot: customers_2026-11.csv" in validation
    assert AIRFLOW_RUN_ID in validation
    index = (report / "index.html").read_text()
    assert "'asset_name': 'training snapshot: customers_2026-11.csv'" in index
    assert f"'run_name': '{AIRFLOW_RUN_ID}'" in index


def test_the_validate_task_names_its_airflow_run_and_both_snapshot_files(settings, source_files) -> None:
    landed = ingest_for(settings, run_parameters(source_files["training"], source_files["scoring"]))
    validated = run_validate(landed.model_dump(mode="json"))

    index = validated.report.read_text()
    assert f"'run_name': '{landed.run.airflow_run_id}'" in index
    for name in ("training", "scoring"):
        assert f"'asset_name': '{name} snapshot: {source_files[name].name}'" in index
