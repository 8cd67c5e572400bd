"""The Starlette app. Its lifespan is the composition root: nothing is built at import time."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from domain.bus import build_bus
from graph.context import Context, Services
from graph.http import graphql_app
from graph.schema import build_schema
from graph.settings import Settings
from graph.wiring import running_core
from readmodels.queries import ReadModelQueries
from readmodels.registry import PROJECTION_NAMES
from readmodels.waiting import CheckpointWaiter

log = logging.getLogger("ordergraph")


def create_app(settings: Settings | None = None) -> Starlette:
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

    graphql = graphql_app(
        build_schema(
            max_depth=settings.max_depth,
            max_aliases=settings.max_aliases,
            max_tokens=settings.max_tokens,
        ),
        max_body_bytes=settings.max_body_bytes,
        context_getter=context,
    )
    return Starlette(
        routes=[Route("/graphql", graphql), WebSocketRoute("/graphql", graphql)],
        lifespan=lifespan,
    )
