"""The validation report of a real failed run, opened offline as a user would: from disk and served.

It must be styled (Bootstrap, Font Awesome's icon font, the index table drawn by its scripts),
load nothing beyond the report folder, and name the snapshot file and the Airflow run it checked.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import land, write_csv

AIRFLOW_RUN_ID = "manual__2026-11-29T02:00:00+00:00"
SNAPSHOT_FILE = "customers_2026-11.csv"
CHECKED = f"training snapshot: {SNAPSHOT_FILE}"


@pytest.fixture(scope="module")
def report(tmp_path_factory, snapshots, contract) -> Path:
    """The Data Docs of a training snapshot that breaks its contract (a negative tenure)."""
    from churn.validate import ContractViolation, validate_snapshots

    run_dir = tmp_path_factory.mktemp("run")
    broken = snapshots.training.copy()
    broken.loc[3, "tenure"] = -5
    snapshot = land(write_csv(broken, run_dir / "sources" / SNAPSHOT_FILE), run_dir, "training")
    with pytest.raises(ContractViolation, match="tenure"):
        validate_snapshots([snapshot], contract, run_dir, airflow_run_id=AIRFLOW_RUN_ID)
    return run_dir / "data_docs"


@pytest.fixture(scope="module")
def served_report(report: Path) -> Iterator[str]:
    """The report folder served over HTTP on a free loopback port."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(report))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def pages(report: Path) -> dict[str, str]:
    """The index and the typed stage's validation page (the failed one), as paths in the report folder."""
    (validation,) = report.glob("validations/training_typed/*/*/*.html")
    return {"index": "index.html", "validation": validation.relative_to(report).as_posix()}


def assert_styled_and_complete(offline_page, url: str) -> str:
    """Open ``url`` offline; check it loaded everything locally and is styled; return its text."""
    page = offline_page.page
    page.goto(url)
    page.wait_for_load_state("load")
    page.evaluate("document.fonts.ready")
    assert offline_page.blocked == []
    assert offline_page.console_errors == []
    # Bootstrap's style sheet: its navbar is a flex box that sticks to the top.
    assert page.eval_on_selector("nav.navbar", "n => getComputedStyle(n).display") == "flex"
    assert page.eval_on_selector("nav.navbar", "n => getComputedStyle(n).position") == "sticky"
    # Font Awesome's style sheet and its (local) icon font.
    icon = "i.fas"
    assert page.eval_on_selector(icon, "i => getComputedStyle(i, '::before').fontFamily").startswith(
        '"Font Awesome 6 Free"'
    )
    assert page.evaluate(
        "[...document.fonts].some(f => f.family.includes('Font Awesome 6 Free') && f.status === 'loaded')"
    )
    # Great Expectations' logo, from the report folder.
    assert page.eval_on_selector("nav.navbar img", "img => img.complete && img.naturalWidth") > 0
    text = page.inner_text("body")
    assert "__none__" not in text
    assert "Data asset: None" not in text
    return text


@pytest.mark.parametrize("served", [False, True], ids=["from_disk", "served"])
def test_the_report_index_works_offline_and_names_what_it_checked(
    report, served_report, offline_page, served
) -> None:
    base = served_report if served else report.as_uri()
    text = assert_styled_and_complete(offline_page, f"{base}/{pages(report)['index']}")

    page = offline_page.page
    # jQuery, Bootstrap and bootstrap-table ran: the results table is drawn from the page's data.
    assert page.locator("table.table tbody tr").count() >= 2
    assert CHECKED in text
    assert AIRFLOW_RUN_ID in text
    page.screenshot(path=str(report.parent / f"index_{'served' if served else 'from_disk'}.png"), full_page=True)


@pytest.mark.parametrize("served", [False, True], ids=["from_disk", "served"])
def test_a_validation_page_works_offline_and_names_what_it_checked(
    report, served_report, offline_page, served
) -> None:
    base = served_report if served else report.as_uri()
    text = assert_styled_and_complete(offline_page, f"{base}/{pages(report)['validation']}")

    assert f"Data asset: {CHECKED}" in text
    assert AIRFLOW_RUN_ID in text
    assert "Failed" in text
    assert "-5" in text
