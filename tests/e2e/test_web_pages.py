"""The pages the service serves without a browser: where they come from, and the fallback
when the npm build is missing."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest

from graph.runtime.app import create_app
from graph.runtime.settings import Settings
from graph.runtime.web import WebPages
from tests.support.browser import require_browser
from tests.support.serving import serve_app


async def test_the_playground_and_the_desk_load_every_file_from_the_service(
    tmp_path: Path,
) -> None:
    require_browser()  # needs the build
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'web.db'}")
    async with serve_app(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        playground = await http.get("/graphql", headers={"Accept": "text/html"})
        front = await http.get("/")
        desk = await http.get("/desk")
        script = await http.get("/static/vendor/graphiql.min.js")
    assert "/static/vendor/graphiql.min.js" in playground.text
    assert "unpkg" not in playground.text
    assert "cdn" not in playground.text.lower()
    assert front.status_code == 307
    assert front.headers["location"] == "/desk"
    assert "order desk" in desk.text
    assert script.status_code == 200
    assert len(script.content) > 1_000_000


async def test_without_the_build_the_playground_falls_back_to_the_cdn_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ordergraph"):
        pages = WebPages.load(tmp_path / "no-dist")
    assert pages.playground_html is None
    assert any(
        "make install" in r.getMessage() and "Node.js" in r.getMessage() for r in caplog.records
    )

    settings = Settings(database_url=f"sqlite:///{tmp_path / 'web.db'}")
    app = create_app(settings, pages=pages)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url) as http:
        playground = await http.get("/graphql", headers={"Accept": "text/html"})
        desk = await http.get("/desk")
    assert "unpkg.com" in playground.text  # strawberry's own page
    assert desk.status_code == 503
    assert "Node.js" in desk.text
