"""Per request: a request id, one log line, and the request metrics.

The id is the client's ``X-Request-ID`` when it is a sane token, otherwise a new one; it is
sent back in the response's ``X-Request-ID`` and set in a context variable for the whole
request (graph/runtime/logs.py), so every line logged meanwhile carries it. WebSocket
connections get one for the connection's life.

What the log line and the metrics say about the GraphQL side (operation, outcome) is filled
in while the request runs, on the ``RequestInfo`` that resolvers reach through their context.
"""

from __future__ import annotations

import contextvars
import logging
import random
import re
import time
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from graph.runtime.logs import request_id
from graph.runtime.metrics import RequestCounters

log = logging.getLogger("ordergraph.request")

_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes: logged at debug


@dataclass(slots=True)
class RequestInfo:
    request_id: str
    # The root fields of the GraphQL operation ("placeOrder", "order,customer"), set once the
    # document is valid; "-" for anything else (bounded: field names come from the schema).
    operation: str = "-"
    # A mutation's typed result member (CommandAccepted, RuleViolated...), or ok / error /
    # invalid; None leaves it to the HTTP status.
    outcome: str | None = None
    # Who made the request, once requests carry an identity; logged as given.
    subject: str | None = None


current_request: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "ordergraph_request", default=None
)


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE_ID.fullmatch(text) else None
    return None


def _new_id() -> str:
    """32 hex digits, as uuid4().hex, without its system call: an id must be unique, not
    secret. (``random`` reseeds itself in a forked worker.)"""
    return f"{random.getrandbits(128):032x}"


class AccessMiddleware:
    def __init__(self, app: ASGIApp, *, log_requests: bool = True) -> None:
        self.app = app
        self.log_requests = log_requests
        self.counters = RequestCounters()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = _incoming_id(scope) or _new_id()
        info = RequestInfo(rid)
        rid_token = request_id.set(rid)
        info_token = current_request.set(info)
        header = (b"x-request-id", rid.encode())
        status = 500  # what the log says if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] in ("http.response.start", "websocket.accept"):
                message["headers"] = [*message.get("headers", ()), header]
                status = message.get("status", 101)
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if kind == "http":
                self._record(scope, info, status, time.perf_counter() - started)
            current_request.reset(info_token)
            request_id.reset(rid_token)

    def _record(self, scope: Scope, info: RequestInfo, status: int, seconds: float) -> None:
        path = scope["path"]
        outcome = info.outcome or ("ok" if status < 400 else str(status))
        if status >= 400 and info.outcome in (None, "ok"):
            outcome = str(status)
        if path == "/graphql":
            self.counters.observe(info.operation, outcome, seconds)
        if not self.log_requests:
            return
        level = logging.DEBUG if path in _QUIET_PATHS and status < 400 else logging.INFO
        if log.isEnabledFor(level):
            log.log(
                level,
                "%s %s %d",
                scope["method"],
                path,
                status,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "operation": info.operation,
                    "outcome": outcome,
                    "duration_ms": round(seconds * 1000, 3),
                    "subject": info.subject,
                },
            )
