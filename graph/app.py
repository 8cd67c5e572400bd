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
from domain.db import create_engine
from domain.store import EventStore
from graph.context import Context, Services
from graph.http import graphql_app
from graph.pg_notifier import PostgresNotifier
from graph.schema import build_schema
from graph.settings import Settings
from migrations import require_head, upgrade_to_head
from readmodels.notifier import InProcessNotifier, Notifier
from readmodels.projector import Projector
from readmodels.queries import ReadModelQueries
from readmodels.registry import PROJECTION_NAMES, all_projections
from readmodels.waiting import CheckpointWaiter

log = logging.getLogger("ordergraph")


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        engine = create_engine(
            settings.database_url,
            pool_size=settings.pool_size,
            max_overflow=settings.pool_size,
            sqlite_synchronous=settings.sqlite_synchronous,
        )
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            if settings.is_sqlite:
                await upgrade_to_head(engine)  # zero set-up for the embedded default
            else:
                await require_head(engine)  # production migrates deliberately
            notifier: Notifier
            if settings.is_sqlite:
                notifier = InProcessNotifier()
            else:
                notifier = await stack.enter_async_context(PostgresNotifier(settings.database_url))
            store = EventStore(engine)
            if settings.run_projector:
                projector = Projector(
                    engine, all_projections(), notifier, poll_interval=settings.poll_interval
                )
                store.on_append(projector.wake)
                await projector.start()
                stack.push_async_callback(projector.stop)
            app.state.services = Services(
                bus=build_bus(store),
                queries=ReadModelQueries(engine),
                waiter=CheckpointWaiter(engine, notifier, PROJECTION_NAMES),
                notifier=notifier,
                read_wait_seconds=settings.read_wait_seconds,
            )
            log.info("ordergraph ready on %s", engine.url.render_as_string(hide_password=True))
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
