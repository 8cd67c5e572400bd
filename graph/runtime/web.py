"""The browser pages: the GraphiQL playground and the order desk, served from ``web/dist``.

``make install`` builds ``web/dist`` from the npm registry's packages (``web/build.mjs``), so
the pages load every script from this service and work with no internet access. Without Node.js
there is no build: the playground falls back to strawberry's page, which loads from a CDN, and
the desk says how to build it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

log = logging.getLogger("ordergraph")

WEB_DIST = Path(__file__).resolve().parents[2] / "web" / "dist"

NOT_BUILT = (
    "The browser pages are not built (web/dist is missing): run `make install` with Node.js 18+"
    " and npm on the PATH. Until then the playground loads GraphiQL from a CDN."
)


@dataclass(frozen=True)
class WebPages:
    """What the built ``web/dist`` holds, read once at start-up."""

    playground_html: str | None
    desk_html: str | None
    dist: Path | None

    @classmethod
    def load(cls, dist: Path = WEB_DIST) -> WebPages:
        if not (dist / "manifest.json").is_file():
            log.warning(NOT_BUILT)
            return cls(playground_html=None, desk_html=None, dist=None)
        return cls(
            playground_html=(dist / "playground.html").read_text(encoding="utf-8"),
            desk_html=(dist / "desk.html").read_text(encoding="utf-8"),
            dist=dist,
        )

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [
            Route("/", _to_desk, methods=["GET", "HEAD"]),
            Route("/desk", self._desk, methods=["GET", "HEAD"]),
        ]
        if self.dist is not None:
            routes.append(Mount("/static", StaticFiles(directory=self.dist), name="static"))
        return routes

    async def _desk(self, request: Request) -> Response:
        if self.desk_html is None:
            return HTMLResponse(f"<!doctype html><title>ordergraph</title><p>{NOT_BUILT}", 503)
        return HTMLResponse(self.desk_html)


async def _to_desk(request: Request) -> Response:
    return RedirectResponse("/desk", status_code=307)
