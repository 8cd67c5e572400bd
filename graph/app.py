"""The Starlette app. Its lifespan is the composition root: nothing is built at import time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from domain.bus import build_bus
from graph.context import Context, Services
from graph.http import graphql_app
from graph.persisted_queries import PersistedQueries
from graph.schema import build_schema
from graph.settings import Settings
from graph.web import WebPages
from graph.wiring import running_core
from readmodels.queries import ReadModelQueries
from readmodels.registry import PROJECTION_NAMES
from readmodels.waiting import CheckpointWaiter

log = logging.getLogger("ordergraph")


def create_app(settings: Settings | None = None, *, pages: WebPages | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running_core(settings, projector=settings.run_projector) as core:
            app.state.services = Services(
                bus=build_bus(core.store),
                queries=ReadModelQueries(core.engine),
                waiter=CheckpointWaiter(core.engine, core.notifier, PROJECTION_NAMES),
                notifier=core.notifier,
                read_wait_seconds=settings.read_wait_seconds,
            )
            url = core.engine.url.render_as_string(hide_password=True)
            log.info("ordergraph ready on %s", url)
            yield

    async def context(request: Request | WebSocket, _response: Response | None) -> Context:
        return Context(services=request.app.state.services)

    pages = pages or WebPages.load()
    graphql = graphql_app(
        build_schema(
            max_depth=settings.max_depth,
            max_aliases=settings.max_aliases,
            max_tokens=settings.max_tokens,
        ),
        max_body_bytes=settings.max_body_bytes,
        context_getter=context,
        playground_html=pages.playground_html,
        allowed_origins=settings.cors_origins,
        persisted_queries=PersistedQueries(settings.persisted_queries_max_bytes),
    )
    return Starlette(
        routes=[Route("/graphql", graphql), WebSocketRoute("/graphql", graphql), *pages.routes()],
        middleware=[cors_middleware(settings.cors_origins)],
        lifespan=lifespan,
    )


def cors_middleware(origins: Sequence[str]) -> Middleware:
    """CORS for HTTP. Browsers do not apply CORS to WebSocket handshakes: the same list is
    strawberry's ``allowed_origins``, checked on every handshake. Tokens travel in the
    Authorization header, never in cookies, so credentials stay off."""
    return Middleware(
        CORSMiddleware,
        allow_origins=list(origins),
        allow_methods=["GET", "POST"],
        allow_headers=["*"],
        expose_headers=["Retry-After", "X-Request-ID"],
        max_age=600,
    )
