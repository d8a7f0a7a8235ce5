"""The validation report (Great Expectations Data Docs) as a folder that works without internet
and names what it checked.

Great Expectations' page templates load Bootstrap, jQuery, Font Awesome, Vega and their
plugins from public CDNs, so without internet a report is blank. The exact files they name
ship with this package in ``report_assets/`` (where they come from, and their licences, is in
its README); :func:`make_offline` copies them beside the pages and points every page at its
local copies with relative links, so the folder works opened from disk or served.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

ASSETS = Path(__file__).with_name("report_assets")
# Where the copies go in a report folder, relative to its index.html.
LOCAL_ASSETS = "static/vendor"
# Every file Great Expectations 1.24's Data Docs load from the internet (each first line), and
# its copy in ``report_assets`` (indented: the npm package it comes from, with its version, then
# its path in that package). ``vega@5`` and friends are ranges the CDN resolves to their newest
# release; the copies pin the newest at the time of vendoring.
REMOTE_ASSET_TABLE = """
https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css
    bootstrap-4.3.1/dist/css/bootstrap.min.css
https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js
    bootstrap-4.3.1/dist/js/bootstrap.min.js
https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css
    bootstrap-table-1.19.1/dist/bootstrap-table.min.css
https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js
    bootstrap-table-1.19.1/dist/bootstrap-table.min.js
https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js
    bootstrap-table-1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js
https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css
    bootstrap-table-1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css
https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css
    bootstrap-table-1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css
https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css
    bootstrap-datepicker-1.9.0/dist/css/bootstrap-datepicker.min.css
https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js
    bootstrap-datepicker-1.9.0/dist/js/bootstrap-datepicker.min.js
https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css
    forevolve-bootstrap-dark-1.1.0/dist/css/bootstrap-prefers-dark.css
https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css
    fortawesome-fontawesome-free-6.6.0/css/all.min.css
https://code.jquery.com/jquery-3.7.1.min.js
    jquery-3.7.1/dist/jquery.min.js
https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js
    popper.js-1.12.9/dist/umd/popper.min.js
https://cdn.jsdelivr.net/npm/vega@5
    vega-5.33.1/build/vega.min.js
https://cdn.jsdelivr.net/npm/vega-lite@5
    vega-lite-5.23.0/build/vega-lite.min.js
https://cdn.jsdelivr.net/npm/vega-embed@6
    vega-embed-6.29.0/build/vega-embed.min.js
"""
_table = REMOTE_ASSET_TABLE.split()
REMOTE_ASSETS = dict(zip(_table[::2], _table[1::2], strict=True))
# The logo is on Great Expectations' web server, with a cache-busting query; the report folder
# has Great Expectations' own copy.
REMOTE_LOGO = re.compile(
    r"https://great-expectations-web-assets\.s3\.us-east-2\.amazonaws\.com/logo-long\.png[^\"']*"
)
LOCAL_LOGO = "static/images/logo-long.png"
# Great Expectations links a validation page's icon one folder too high.
FAVICON = re.compile(r'href="(?:\./|(?:\.\./)+)static/images/favicon\.ico"')
# What a page loads: scripts, style sheets, icons and images (links to other sites are not loaded).
LOADED = re.compile(r"<(?:script|link|img)\b[^>]*?\b(?:src|href)=[\"'](https?://[^\"']+)", re.IGNORECASE)
# Checks that need CORS, which a page opened from disk cannot make.
CORS_CHECKS = re.compile(r"\s+(?:integrity=[\"']sha\d+-[^\"']+[\"']|crossorigin=[\"']anonymous[\"'])")
NO_AIRFLOW_RUN = "no_airflow_run"


@dataclass(frozen=True)
class CheckedSnapshot:
    """What a report page says was checked: which snapshot, from which file, in which Airflow run."""

    snapshot: str
    source: str
    landed: str
    airflow_run_id: str | None = None

    @property
    def asset_name(self) -> str:
        """The snapshot and its file's name, e.g. ``training snapshot: customers.csv``."""
        return f"{self.snapshot} snapshot: {PurePosixPath(urlsplit(self.source).path).name or self.source}"

    @property
    def run_name(self) -> str:
        return self.airflow_run_id or NO_AIRFLOW_RUN

    def result_meta(self, meta: dict[str, Any], rows: int) -> dict[str, Any]:
        """A result's ``meta`` naming the snapshot: the pages read the data asset from its batch spec."""
        batch_definition = {**meta.get("active_batch_definition", {}), "data_asset_name": self.asset_name}
        batch_spec = {
            "data_asset_name": self.asset_name,
            "source": self.source,
            "landed_file": self.landed,
            "rows": rows,
        }
        return {**meta, "active_batch_definition": batch_definition, "batch_spec": batch_spec}


def make_offline(site: Path) -> None:
    """Copy the report's assets into ``site`` and point its pages at them, so it needs no network."""
    if not (site / "index.html").is_file():
        return
    shutil.copytree(ASSETS, site / LOCAL_ASSETS, dirs_exist_ok=True)
    for page in site.rglob("*.html"):
        page.write_text(offline_html(page.read_text(encoding="utf-8"), len(page.relative_to(site).parts) - 1))
        for url in remote_assets(page.read_text(encoding="utf-8")):
            log.warning("report page %s still loads %s from the internet", page.relative_to(site), url)


def offline_html(html: str, depth: int) -> str:
    """A page ``depth`` folders below the report's index, with its assets read from the report folder."""
    root = "../" * depth
    for url, local in REMOTE_ASSETS.items():
        html = html.replace(f'"{url}"', f'"{root}{LOCAL_ASSETS}/{local}"')
    html = REMOTE_LOGO.sub(root + LOCAL_LOGO, html)
    html = FAVICON.sub(f'href="{root}static/images/favicon.ico"', html)
    # The integrity checks of the CDN's files cannot run from disk; the tests check the copies
    # against them instead.
    return CORS_CHECKS.sub("", html)


def remote_assets(html: str) -> list[str]:
    """The URLs of everything ``html`` would load from the internet."""
    return LOADED.findall(html)
