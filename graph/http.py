"""The GraphQL ASGI app: strawberry's view plus what the GraphQL-over-HTTP spec asks of us.

Strawberry already gives us POST/GET, GraphiQL for browsers and both WebSocket protocols. We add:

- ``application/graphql-response+json`` when the client accepts it, with the spec's status
  codes (400 for request errors: unparsable, invalid, bad variables). Plain ``application/json``
  keeps the legacy rule: 200 for any well-formed request.
- 405 with ``Allow`` for a mutation over GET (strawberry says 400).
- 413 for bodies over a limit, checked on Content-Length and on the bytes actually streamed.
- HTTP-level errors as GraphQL-shaped JSON instead of plain text.
- Automatic persisted queries (graph/persisted_queries.py), and our own playground page.
- 400 for every body or ``variables`` that is not a JSON object (null, a number, a string, a
  bool), is not UTF-8, or that ``json`` cannot decode (integers over 4,300 digits, nesting
  deeper than the recursion limit): strawberry expects an object and fails with a 500.
- WebSocket handlers that refuse malformed messages with 4400 (graph/websockets.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeAlias

import strawberry
from cross_web import (  # what strawberry's views raise and read, for HTTP-level errors
    AsyncHTTPRequestAdapter,
    HTTPException,
)
from graphql import ASTValidationRule, GraphQLError, NoSchemaIntrospectionCustomRule
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_limit_rule
from strawberry.extensions.query_depth_limiter import create_validator as depth_limit_rule
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from domain.eventstore.engines import json_text
from graph.document_cache import cached_documents
from graph.outages import RETRY_AFTER_SECONDS, any_unavailable, caused_by_outage, unavailable
from graph.persisted_queries import PersistedQueries, PersistedQueryError
from graph.runtime.request_log import current_request
from graph.websockets import LegacyWSHandler, TransportWSHandler

logger = logging.getLogger("ordergraph.graph")

GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
APPLICATION_JSON = "application/json"
MASKED_MESSAGE = "Unexpected error."

ContextGetter: TypeAlias = Callable[[Request | WebSocket, Response | None], Awaitable[object]]
# Called with a WebSocket's context once its connection_init arrives (payload in
# context.connection_params); raising ConnectionRejectionError closes it with 4403.
ConnectHook: TypeAlias = Callable[[object], Awaitable[None]]
# Called with a WebSocket's context once the connection has ended.
DisconnectHook: TypeAlias = Callable[[object], None]
ExtensionFactory: TypeAlias = type[SchemaExtension] | Callable[[], SchemaExtension]

# Set on request.state by process_result, read when the response is finished.
_REQUEST_ERROR = "graphql_request_error"
_UNAVAILABLE = "graphql_unavailable"
_WS_CONTEXT = "graphql_context"  # a WebSocket's context, on its state


def schema_extensions(
    *,
    max_depth: int,
    max_aliases: int,
    max_tokens: int,
    production: bool = False,
    max_cost: int | None = None,
) -> list[ExtensionFactory]:
    """Factories (not instances: strawberry wants one fresh extension per operation).
    ``production``: no introspection, and no "Did you mean ...?" in validation errors."""
    # QueryDepthLimiter and MaxAliasesLimiter would build a new rule class per instance, that
    # is per operation, so nothing could be cached: build the rules once.
    limits: list[type[ASTValidationRule]] = [
        depth_limit_rule(max_depth, should_ignore=None),
        alias_limit_rule(max_aliases),
    ]
    if production:
        limits.append(NoSchemaIntrospectionCustomRule)
    return [
        cached_documents(
            max_tokens=max_tokens,
            rules=limits,
            hide_suggestions=production,
            max_cost=max_cost,
        ),
        lambda: LoggingMaskErrors(should_mask_error=is_unexpected, error_message=MASKED_MESSAGE),
    ]


def is_unexpected(error: GraphQLError) -> bool:
    """True for errors a client should not see: an exception escaping a resolver or extension.

    Parse, validation and limit errors are GraphQLErrors of their own (no foreign original
    error). Input coercion errors (a custom scalar's parse raising ValueError/TypeError) arise
    before any resolver runs, so they carry no path, and their message is meant for the client.
    """
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return False
    return not (error.path is None and isinstance(original, ValueError | TypeError))


class LoggingMaskErrors(MaskErrors):
    """MaskErrors that logs the full exception before it is replaced by a bland message."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        logger.error(
            "unexpected error in GraphQL operation %s at %s: %s",
            self.execution_context.operation_name,
            error.path,
            error.message,
            exc_info=(type(original), original, original.__traceback__) if original else None,
        )
        return super().anonymise_error(error)

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        # An outage is not a bug: say so (typed, retryable) instead of masking it.
        return super()._process_errors(
            [unavailable(e) if caused_by_outage(e) else e for e in errors]
        )

    def _process_result(self, result: object) -> None:
        # The base class asks isinstance() of a runtime-checkable Protocol, which is slow per
        # request (docs/performance.md).
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]


class BodyTooLargeError(Exception):
    pass


class BodyTooSlowError(Exception):
    pass


class GraphQLApp(GraphQL[object, None]):
    graphql_transport_ws_handler_class = TransportWSHandler
    # Strict about messages, and 4403 on the legacy protocol too (RejectingGraphQLWSHandler).
    graphql_ws_handler_class = LegacyWSHandler

    def encode_json(self, data: object) -> str:
        # msgspec rather than json.dumps: several times faster on every response and
        # WebSocket message. Text, not bytes: bytes would go out as binary WebSocket frames.
        return json_text(data)

    def __init__(
        self,
        schema: strawberry.Schema,
        *,
        max_body_bytes: int,
        context_getter: ContextGetter | None = None,
        graphiql: bool = True,
        playground_html: str | None = None,
        allowed_origins: Sequence[str] = (),
        persisted_queries: PersistedQueries | None = None,
        on_connect: ConnectHook | None = None,
        on_disconnect: DisconnectHook | None = None,
        connection_init_timeout: timedelta = timedelta(seconds=10),
        max_subscriptions_per_socket: int = 100,
        body_timeout: float = 30.0,
    ) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if graphiql else None,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            allowed_origins=allowed_origins,
            connection_init_wait_timeout=connection_init_timeout,
        )
        self.max_body_bytes = max_body_bytes
        self.max_subscriptions_per_connection = max_subscriptions_per_socket
        self.body_timeout = body_timeout
        self._context_getter = context_getter
        self._playground_html = playground_html
        self._persisted_queries = persisted_queries
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect

    def decode_json(self, data: str | bytes) -> object:
        """json.loads, with every way it can fail as the JSONDecodeError strawberry expects
        (HTTP: 400; WebSocket: 4400), not only bad syntax."""
        try:
            return json.loads(data)
        except (ValueError, RecursionError) as error:  # bad UTF-8, >4,300 digits, too deep
            raise json.JSONDecodeError(
                f"not decodable JSON: {type(error).__name__}", "", 0
            ) from None

    def parse_json(self, data: str | bytes) -> Any:
        """A request body: a JSON object (or a list, which strawberry refuses as a batch)."""
        decoded = super().parse_json(data)
        if not isinstance(decoded, dict | list):
            raise HTTPException(400, "The request body must be a JSON object.")
        return decoded

    async def execute_single(
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: Any,
        root_value: Any,
        request_data: Any,
    ) -> ExecutionResult:
        """strawberry's, without subscriptions: over plain HTTP they ran as a query and failed
        inside (a masked error); they are served over WebSocket."""
        allowed = OperationType.from_http(request_adapter.method) - {OperationType.SUBSCRIPTION}
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
        except CannotGetOperationTypeError as error:
            raise HTTPException(400, error.as_http_error_reason()) from error
        except InvalidOperationTypeError as error:
            reason = error.as_http_error_reason(request_adapter.method)
            if error.operation_type is OperationType.SUBSCRIPTION:
                reason = "Subscriptions are served over WebSocket at this URL, not over HTTP."
            raise HTTPException(400, reason) from error
        except MissingQueryError as error:
            raise HTTPException(400, "No GraphQL query found in the request") from error

    def parse_query_params(self, params: Any) -> dict[str, Any]:
        """GET parameters: ``variables`` and ``extensions`` may be any JSON, strawberry then
        refuses what is not an object (or null)."""
        parsed = dict(params)
        for name in ("variables", "extensions"):
            if parsed.get(name):
                try:
                    parsed[name] = self.decode_json(parsed[name])
                except json.JSONDecodeError:
                    raise HTTPException(400, f"`{name}` is not valid JSON.") from None
        return parsed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            try:
                await super().__call__(scope, receive, send)
            finally:
                context = scope.get("state", {}).get(_WS_CONTEXT)
                if context is not None and self._on_disconnect is not None:
                    self._on_disconnect(context)
            return
        request = Request(scope, receive=self._limited(receive))
        media_type = response_media_type(request.headers.get("accept"))
        try:
            self._check_content_length(request)
            response = await self.run(request)
        except BodyTooLargeError:
            response = error_response(413, "Request body too large.", media_type)
        except BodyTooSlowError:
            logger.info("request body not received within %s s: answered 408", self.body_timeout)
            response = error_response(408, "Request body not received in time.", media_type)
        except HTTPException as error:
            response = self._http_error(request, error, media_type)
        except PersistedQueryError as error:
            response = error_response(error.status, error.message, media_type, code=error.code)
        else:
            if getattr(request.state, _UNAVAILABLE, False):
                response.status_code = 503
                response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
            if response.media_type == APPLICATION_JSON and media_type == GRAPHQL_RESPONSE_JSON:
                response.headers["content-type"] = GRAPHQL_RESPONSE_JSON
                if getattr(request.state, _REQUEST_ERROR, False):
                    response.status_code = 400
        await response(scope, receive, send)

    def _check_content_length(self, request: Request) -> None:
        declared = request.headers.get("content-length")
        if declared is None:
            return
        if not declared.isdigit():
            raise HTTPException(400, "Invalid Content-Length header.")
        if int(declared) > self.max_body_bytes:
            raise BodyTooLargeError

    def _limited(self, receive: Receive) -> Receive:
        """Count the body as it streams in: Content-Length may be absent (chunked) or lie.
        And give it a deadline: a client that never finishes its body (a chunked body that
        never ends, a byte a minute) would otherwise hold the request forever."""
        received = 0
        deadline: float | None = asyncio.get_running_loop().time() + self.body_timeout

        async def limited_receive() -> Message:
            nonlocal received, deadline
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlowError from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLargeError
                if not message.get("more_body", False):
                    deadline = None  # the body is complete: later receives wait for disconnect
            return message

        return limited_receive

    def _http_error(self, request: Request, error: HTTPException, media_type: str) -> Response:
        if error.status_code == 405:
            return error_response(405, error.reason, media_type, allow="GET, POST")
        cause = error.__cause__
        if (
            request.method == "GET"
            and isinstance(cause, InvalidOperationTypeError)
            and cause.operation_type is OperationType.MUTATION
        ):
            return error_response(
                405, "Mutations must be sent with POST.", media_type, allow="POST"
            )
        headers = getattr(error, "headers", None)  # e.g. WWW-Authenticate on a 401
        return error_response(error.status_code, error.reason, media_type, headers=headers)

    async def render_graphql_ide(self, request: Request) -> Response:
        if self._playground_html is None:
            return await super().render_graphql_ide(request)  # strawberry's page, from a CDN
        return HTMLResponse(self._playground_html)

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        # A GET naming a persisted query by hash alone is an operation, not a browser visit.
        return "extensions" not in request.query_params and super().should_render_graphql_ide(
            request
        )

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        data = await super().parse_http_body(request)
        if self._persisted_queries is None or isinstance(data, list):
            return data
        return self._persisted_queries.resolve(data)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> object:
        if self._context_getter is None:
            return await super().get_context(request, response)
        context = await self._context_getter(
            request, response if isinstance(response, Response) else None
        )
        if isinstance(request, WebSocket):
            setattr(request.state, _WS_CONTEXT, context)  # for on_disconnect
        return context

    async def on_ws_connect(self, context: object) -> UnsetType | dict[str, object] | None:
        if self._on_connect is not None:
            await self._on_connect(context)
        unset: UnsetType = UNSET
        return unset

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        processed = await super().process_result(request, result)
        info = current_request.get()
        if any_unavailable(result.errors):
            setattr(request.state, _UNAVAILABLE, True)
        if is_request_error(result):
            # The GraphQL spec: an error raised before execution leaves no "data" entry.
            processed.pop("data", None)
            setattr(request.state, _REQUEST_ERROR, True)
            if info is not None:
                info.outcome = "invalid"
        elif info is not None:
            info.outcome = "error" if result.errors else (info.outcome or "ok")
        return processed


# One ASGI app to mount as both the HTTP and the WebSocket route at /graphql.
graphql_app = GraphQLApp


def is_request_error(result: ExecutionResult) -> bool:
    """Parse, validation and variable coercion failures: no data, and no error tied to a field
    (a field error that nulls the whole result still has a path)."""
    return (
        result.data is None
        and bool(result.errors)
        and all(e.path is None for e in result.errors or ())
    )


def response_media_type(accept: str | None) -> str:
    """``application/graphql-response+json`` if the client accepts it at least as much as
    ``application/json``; otherwise (including no Accept header) the legacy ``application/json``."""
    graphql_response_q = json_q = 0.0
    for media_range in (accept or "").split(","):
        media, *params = (part.strip().lower() for part in media_range.split(";"))
        q = _quality(params)
        if media == GRAPHQL_RESPONSE_JSON:
            graphql_response_q = max(graphql_response_q, q)
        elif media in (APPLICATION_JSON, "application/*", "*/*"):
            json_q = max(json_q, q)
    if graphql_response_q > 0 and graphql_response_q >= json_q:
        return GRAPHQL_RESPONSE_JSON
    return APPLICATION_JSON


def _quality(params: list[str]) -> float:
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "q":
            try:
                return float(value)
            except ValueError:
                return 0.0
    return 1.0


def error_response(
    status: int,
    message: str,
    media_type: str,
    *,
    allow: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    error: dict[str, object] = {"message": message}
    if code is not None:
        error["extensions"] = {"code": code}
    body = json.dumps({"errors": [error]}, separators=(",", ":"))
    headers = {**(headers or {}), **({"Allow": allow} if allow else {})}
    return Response(body, status_code=status, media_type=media_type, headers=headers or None)
