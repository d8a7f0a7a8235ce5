"""The browser fixture itself: a page on loopback loads, anything beyond it is cut off."""

from __future__ import annotations

import http.server
import threading
from functools import partial
from pathlib import Path

import pytest


@pytest.fixture
def served_folder(tmp_path: Path):
    """``tmp_path`` served over HTTP on a free loopback port."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_loopback_loads_and_the_internet_is_cut_off(served_folder, offline_page) -> None:
    folder, base = served_folder
    (folder / "local.css").write_text("h1 { color: rgb(1, 2, 3); }")
    (folder / "index.html").write_text(
        '<link rel="stylesheet" href="local.css">'
        '<link rel="stylesheet" href="https://cdn.example.com/remote.css">'
        "<h1>offline</h1>"
    )
    page = offline_page.page
    page.goto(f"{base}/index.html")

    assert page.inner_text("h1") == "offline"
    assert page.eval_on_selector("h1", "node => getComputedStyle(node).color") == "rgb(1, 2, 3)"
    assert offline_page.blocked == ["https://cdn.example.com/remote.css"]
