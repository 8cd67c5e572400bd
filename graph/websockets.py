"""Strawberry's two WebSocket protocol handlers, strict about what they accept.

Strawberry trusts a message's shape once it parsed as JSON: a list, a string, a payload that
is not an object or a legacy message without ``id`` raised inside the handler and dropped the
socket without a close code, with a traceback in the log. Here every client message is checked
first; one the server cannot use closes the socket with 4400 (the graphql-transport-ws code for
it, used for the legacy protocol too) and one log line. The legacy protocol also gets the
connection_init timeout that graphql-transport-ws has (4408).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any, cast

from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)

from graph.authn import RejectingGraphQLWSHandler

logger = logging.getLogger("ordergraph.graph")

UNPARSABLE = 4400
INIT_TIMEOUT = 4408
NOT_JSON = "WebSocket message must be valid JSON"


def _operation_problem(payload: object) -> str | None:
    if not isinstance(payload, Mapping):
        return "payload must be an object"
    if not isinstance(payload.get("query"), str):
        return "payload.query must be a string"
    for key, kind in (("variables", Mapping), ("extensions", Mapping), ("operationName", str)):
        if payload.get(key) is not None and not isinstance(payload[key], kind):
            return f"payload.{key} has the wrong type"
    return None


def _problem(message: object, needs_id: set[str], operations: set[str]) -> str | None:
    """What is wrong with a client message (None: nothing), for either protocol."""
    if not isinstance(message, Mapping):
        return "a message must be a JSON object"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "a message must have a string `type`"
    if kind in needs_id and not isinstance(message.get("id"), str):
        return f"a {kind} message must have a string `id`"
    if kind in operations:
        return _operation_problem(message.get("payload"))
    return None


class TransportWSHandler(BaseGraphQLTransportWSHandler[Any, Any]):
    async def handle_message(self, message: Any) -> None:
        problem = _problem(message, {"subscribe", "complete"}, {"subscribe"})
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def handle_invalid_message(self, error_message: str) -> None:
        logger.info("closing a graphql-transport-ws socket (4400): %s", error_message)
        await super().handle_invalid_message(error_message)


_LEGACY_TYPES = {"connection_init", "start", "stop", "connection_terminate"}


class LegacyWSHandler(RejectingGraphQLWSHandler):
    async def handle(self) -> None:
        # Strawberry's loop skips unparsable messages and has no init timeout; this one
        # closes on the first message it cannot use, and on a client that never initialises.
        timeout = asyncio.create_task(self._close_unless_initialised())
        try:
            try:
                async for message in self.websocket.iter_json():
                    problem = _problem(message, {"start", "stop"}, {"start"})
                    if problem is None and cast(Mapping[str, Any], message)["type"] not in (
                        _LEGACY_TYPES
                    ):
                        problem = f"unknown message type {cast(Any, message)['type']!r}"
                    if problem is not None:
                        await self._refuse(problem)
                        return
                    await self.handle_message(cast(Any, message))
            except NonTextMessageReceived:
                await self.websocket.close(code=1002, reason="WebSocket message type must be text")
            except NonJsonMessageReceived:
                await self._refuse(NOT_JSON)
        except WebSocketDisconnected:
            pass
        finally:
            timeout.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timeout
            if self.keep_alive_task:
                self.keep_alive_task.cancel()
                with contextlib.suppress(BaseException):
                    await self.keep_alive_task
            await self.cleanup()

    async def _refuse(self, problem: str) -> None:
        logger.info("closing a graphql-ws socket (4400): %s", problem)
        await self.websocket.close(code=UNPARSABLE, reason=problem[:120])

    async def _close_unless_initialised(self) -> None:
        await asyncio.sleep(self.view.connection_init_wait_timeout.total_seconds())
        if not self.connection_acknowledged:
            with contextlib.suppress(WebSocketDisconnected):
                await self.websocket.close(
                    code=INIT_TIMEOUT, reason="Connection initialisation timeout"
                )
