"""The Starlette app. Its lifespan is the composition root: nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from domain.bus import build_bus
from graph.authn import Authenticator, close_when_expired
from graph.budgets import Budgets
from graph.context import Context, Services
from graph.http import graphql_app
from graph.persisted_queries import PersistedQueries
from graph.rate_limit import RateLimiter
from graph.runtime import metrics
from graph.runtime.composition import running_core
from graph.runtime.health import Operations, healthz, readyz
from graph.runtime.request_log import AccessMiddleware, current_request
from graph.runtime.settings import Settings
from graph.runtime.web import WebPages
from graph.schema import build_schema
from graph.tokens import TokenVerifier
from migrations import head_revision
from readmodels.notifications.postgres import PostgresNotifier
from readmodels.operations_bus import OperationsBus
from readmodels.order_changes import OrderChanges
from readmodels.queries import ReadModelQueries
from readmodels.registry import PROJECTION_NAMES, all_projections
from readmodels.waiting import CheckpointWaiter

log = logging.getLogger("ordergraph")


def create_app(
    settings: Settings | None = None,
    *,
    pages: WebPages | None = None,
) -> Starlette:
    settings = settings or Settings.from_env()
    jwt = settings.auth_mode == "jwt"  # raises InvalidSettings for a choice not allowed
    authenticator = Authenticator(TokenVerifier(settings) if jwt else None)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not jwt:
            log.warning(
                "AUTH=none: every caller may read and change every order; "
                "set AUTH=jwt before exposing this server (docs/security.md)"
            )
        await authenticator.load()
        async with running_core(settings, projector=settings.run_projector) as core:
            core.store.on_batch(metrics.observe_append_batch)
            core.reads.on_retry = metrics.READ_RETRIES.inc
            if isinstance(core.notifier, PostgresNotifier):
                core.notifier.on_reconnect = metrics.NOTIFIER_RECONNECTS.inc
            if core.projector is not None:
                core.projector.pass_observers.append(metrics.observe_projector_pass)
            if settings.tracing:
                from graph.runtime.tracing import traced_bus

                bus = traced_bus(core.store)
            else:
                bus = build_bus(core.store)
            queries = ReadModelQueries(core.engine)
            waiter = CheckpointWaiter(core.engine, core.notifier, PROJECTION_NAMES)
            order_changes = OrderChanges(queries, core.notifier, waiter, core.reads)
            await order_changes.start()
            app.state.services = Services(
                bus=bus,
                queries=queries,
                waiter=waiter,
                notifier=core.notifier,
                read_wait_seconds=settings.read_wait_seconds,
                authenticator=authenticator,
                mutation_limiter=RateLimiter(settings.mutation_rate, settings.mutation_burst),
                budgets=Budgets(
                    max_subscriptions=settings.max_subscriptions,
                    max_held_reads=settings.max_held_reads,
                    max_wait_ahead=settings.max_wait_ahead,
                ),
                order_changes=order_changes,
                reads=core.reads,
                projection_ops=OperationsBus(
                    engine=core.engine,
                    projections=all_projections(),
                    notifier=core.notifier,
                    wake_builds=core.projector.wake_builds if core.projector else _nothing,
                ),
            )
            app.state.operations = Operations(
                engine=core.engine,
                notifier=core.notifier,
                schema_revision=await asyncio.to_thread(head_revision),
                runs_projector=core.projector is not None,
                stall_seconds=settings.stall_seconds,
                check_timeout=settings.db_connect_timeout,
                reads=core.reads,
            )
            url = core.engine.url.render_as_string(hide_password=True)
            log.info("ordergraph ready on %s", url)
            try:
                yield
            finally:
                await order_changes.stop()
                metrics.mark_worker_gone()

    async def context(request: Request | WebSocket, _response: Response | None) -> Context:
        services = request.app.state.services
        info = current_request.get()
        if isinstance(request, WebSocket):
            # Anonymous until its connection_init names someone.
            actor = authenticator.connecting()
            return Context(services, actor, websocket=request, request=info)
        return Context(services, await authenticator.http(request.headers), request=info)

    async def on_connect(context: object) -> None:
        assert isinstance(context, Context)
        actor = context.actor = await authenticator.websocket(context.connection_params)
        if context.expiry is not None:
            context.expiry.cancel()
        if actor.expires_at is not None and context.websocket is not None:
            context.expiry = asyncio.create_task(
                close_when_expired(context.websocket, actor.expires_at, settings.jwt_leeway)
            )

    def on_disconnect(context: object) -> None:
        if isinstance(context, Context) and context.expiry is not None:
            context.expiry.cancel()

    pages = pages or WebPages.load()
    graphql = graphql_app(
        build_schema(
            max_depth=settings.max_depth,
            max_aliases=settings.max_aliases,
            max_tokens=settings.max_tokens,
            tracing=settings.tracing,
            production=settings.production,
            max_cost=settings.max_query_cost,
        ),
        max_body_bytes=settings.max_body_bytes,
        context_getter=context,
        connection_init_timeout=timedelta(seconds=settings.ws_init_timeout),
        max_subscriptions_per_socket=settings.max_subscriptions_per_socket,
        body_timeout=settings.body_timeout,
        playground_html=pages.playground_html,
        allowed_origins=settings.cors_origins,
        persisted_queries=PersistedQueries(settings.persisted_queries_max_bytes),
        graphiql=not settings.production,
        on_connect=on_connect,
        on_disconnect=on_disconnect,
    )
    app = Starlette(
        routes=[
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics.metrics_endpoint),
            *pages.routes(),
        ],
        # Outermost first: every response, CORS preflights included, gets its request id.
        middleware=[
            Middleware(AccessMiddleware, log_requests=settings.request_log),
            cors_middleware(settings.cors_origins),
        ],
        lifespan=lifespan,
    )
    if settings.tracing:
        from graph.runtime.tracing import instrument_app

        instrument_app(app)
    return app


def _nothing() -> None:
    pass


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
