"""The report's vendored assets: every file Great Expectations' pages load from a CDN has its
unchanged copy here, with its licence, and pages are rewritten to load the copies."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import great_expectations
import pytest

from churn.data_docs import ASSETS, LOCAL_ASSETS, REMOTE_ASSETS, CheckedSnapshot, offline_html, remote_assets

TEMPLATES = Path(great_expectations.__file__).parent / "render" / "view" / "templates"
GX_LOGO_SERVER = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"


def template_assets() -> dict[str, str]:
    """Every URL Great Expectations' page templates load, with its integrity hash if pinned."""
    found: dict[str, str] = {}
    for template in TEMPLATES.glob("*.j2"):
        for tag in re.findall(r"<(?:script|link)\b[^>]*>", template.read_text()):
            url = re.search(r"(?:src|href)=\"(https?://[^\"]+)\"", tag)
            if url:
                integrity = re.search(r"integrity=\"([^\"]+)\"", tag)
                found[url.group(1)] = integrity.group(1) if integrity else ""
    return found


def test_every_asset_the_templates_load_has_a_local_copy() -> None:
    loaded = template_assets()
    assert loaded, "no remote assets found: the templates moved?"
    assert set(loaded) == set(REMOTE_ASSETS)
    for local in REMOTE_ASSETS.values():
        assert (ASSETS / local).is_file(), local
    # The logo is the only image the templates fetch from a server.
    assert GX_LOGO_SERVER in (TEMPLATES / "top_navbar.j2").read_text()


@pytest.mark.parametrize("url", [url for url, integrity in template_assets().items() if integrity])
def test_copies_are_the_files_great_expectations_pins_by_hash(url: str) -> None:
    algorithm, expected = template_assets()[url].split("-", 1)
    digest = hashlib.new(algorithm, (ASSETS / REMOTE_ASSETS[url]).read_bytes()).digest()
    assert base64.b64encode(digest).decode() == expected


def test_style_sheets_load_only_local_files() -> None:
    for sheet in ASSETS.rglob("*.css"):
        for url in re.findall(r"url\(([^)]+)\)", sheet.read_text()):
            url = url.strip("'\"")
            if url.startswith("data:"):
                continue
            assert not url.startswith(("http:", "https:", "//")), (sheet, url)
            assert (sheet.parent / url.split("?")[0].split("#")[0]).resolve().is_file(), (sheet, url)


def test_every_vendored_package_keeps_its_licence_and_nothing_else_is_shipped() -> None:
    packages = {local.split("/")[0] for local in REMOTE_ASSETS.values()}
    assert {folder.name for folder in ASSETS.iterdir() if folder.is_dir()} == packages
    for package in packages:
        assert list((ASSETS / package).glob("LICENSE*")), package
    needed = {ASSETS / local for local in REMOTE_ASSETS.values()}
    needed |= set((ASSETS / "fortawesome-fontawesome-free-6.6.0" / "webfonts").iterdir())
    shipped = {f for f in ASSETS.rglob("*") if f.is_file() and not f.name.startswith(("LICENSE", "README"))}
    assert shipped == needed


def test_pages_load_the_copies_relative_to_their_own_folder() -> None:
    page = (
        '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
        '<script src="https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js" '
        'integrity="sha384-abc" crossorigin="anonymous"></script>'
        f'<img src="{GX_LOGO_SERVER}logo-long.png?d=20261130T000000Z">'
        '<link rel="shortcut icon" href="../../../static/images/favicon.ico"/>'
        '<a href="https://greatexpectations.io">Great Expectations</a>'
    )
    assert remote_assets(page) == [
        "https://code.jquery.com/jquery-3.7.1.min.js",
        "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js",
        f"{GX_LOGO_SERVER}logo-long.png?d=20261130T000000Z",
    ]

    offline = offline_html(page, depth=4)

    assert remote_assets(offline) == []
    assert f'src="../../../../{LOCAL_ASSETS}/jquery-3.7.1/dist/jquery.min.js"' in offline
    assert f'src="../../../../{LOCAL_ASSETS}/bootstrap-4.3.1/dist/js/bootstrap.min.js"></script>' in offline
    assert 'src="../../../../static/images/logo-long.png"' in offline
    assert 'href="../../../../static/images/favicon.ico"' in offline
    # A link to another site is not something the page loads: it stays.
    assert '<a href="https://greatexpectations.io">' in offline
    assert 'src="static/vendor/jquery-3.7.1/dist/jquery.min.js"' in offline_html(page, depth=0)


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ("/data/in/customers_2026-11.csv", "training snapshot: customers_2026-11.csv"),
        ("s3://bucket/exports/customers.parquet", "training snapshot: customers.parquet"),
        ("sql://churn_source/crm.customers", "training snapshot: crm.customers"),
    ],
)
def test_a_report_names_the_snapshot_by_its_file(source: str, named: str) -> None:
    run_id = "scheduled__2026-11-29T02:00:00+00:00"
    checked = CheckedSnapshot("training", source, "/runs/x/raw/training.csv", run_id)
    assert checked.asset_name == named
    assert checked.run_name == run_id
    meta = checked.result_meta({"active_batch_definition": {"data_asset_name": "chunk"}}, rows=3)
    assert meta["batch_spec"]["data_asset_name"] == meta["active_batch_definition"]["data_asset_name"] == named
    assert meta["batch_spec"]["source"] == source
