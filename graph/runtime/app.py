"""The Starlette app: routes, middleware, and the GraphQL view. Its lifespan enters the
composition root (graph/runtime/composition.py); nothing is built at import time."""

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

from graph.authn import Authenticator, close_when_expired
from graph.context import Context
from graph.http import graphql_app
from graph.persisted_queries import PersistedQueries
from graph.runtime import metrics
from graph.runtime.composition import running_service
from graph.runtime.health import healthz, readyz
from graph.runtime.request_log import AccessMiddleware, current_request
from graph.runtime.settings import Settings
from graph.runtime.web import WebPages
from graph.schema import build_schema
from graph.tokens import TokenVerifier

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
        async with running_service(settings, authenticator) as service:
            app.state.services, app.state.operations = service.services, service.operations
            url = service.core.engine.url.render_as_string(hide_password=True)
            log.info("ordergraph ready on %s", url)
            try:
                yield
            finally:
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
