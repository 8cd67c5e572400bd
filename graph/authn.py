"""Authentication at the edge: who is calling, from the HTTP ``Authorization`` header or the
WebSocket ``connection_init`` payload.

HTTP: no token is an anonymous caller (who may introspect and open the playground, nothing
else: graph/permissions.py); a token that fails verification is a 401 for the whole request,
whatever it asks (RFC 6750). WebSocket: every connection needs a valid token in its
``connection_init`` payload (``Authorization`` or ``authorization``: ``"Bearer <jwt>"``, or
``token``: ``"<jwt>"``); without one it is closed with 4403 on both protocols, and it is
closed with 4403 when that token expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any

from cross_web import HTTPException
from starlette.websockets import WebSocket, WebSocketState
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import ConnectionInitMessage

from domain.access import Actor
from graph.tokens import InvalidToken, TokenVerifier

UNRESTRICTED = Actor.unrestricted_access()
ANONYMOUS = Actor.anonymous()


class Unauthorized(HTTPException):
    """401 with the ``WWW-Authenticate`` challenge RFC 6750 asks for."""

    def __init__(self, reason: str) -> None:
        super().__init__(401, f"Invalid bearer token: {reason}")
        self.headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class Authenticator:
    def __init__(self, verifier: TokenVerifier | None) -> None:
        """``verifier`` None: AUTH=none, every caller is unrestricted."""
        self._verifier = verifier

    @property
    def required(self) -> bool:
        return self._verifier is not None

    async def load(self) -> None:
        if self._verifier is not None:
            await self._verifier.load()

    async def http(self, headers: Mapping[str, str]) -> Actor:
        if self._verifier is None:
            return UNRESTRICTED
        header = headers.get("authorization")
        if header is None:
            return ANONYMOUS
        try:
            return await self._verifier.verify(_bearer(header))
        except InvalidToken as error:
            raise Unauthorized(str(error)) from None

    def connecting(self) -> Actor:
        """A WebSocket's caller until its connection_init says who it is."""
        return UNRESTRICTED if self._verifier is None else ANONYMOUS

    async def websocket(self, params: object) -> Actor:
        """The caller named by a connection_init payload; ConnectionRejectionError if none."""
        if self._verifier is None:
            return UNRESTRICTED
        token = _token_in(params)
        if token is None:
            raise ConnectionRejectionError({"message": "a bearer token is required"})
        try:
            return await self._verifier.verify(token)
        except InvalidToken as error:
            raise ConnectionRejectionError({"message": f"invalid token: {error}"}) from None


def _bearer(header: str) -> str:
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _token_in(params: object) -> str | None:
    if not isinstance(params, dict):
        return None
    for key in ("Authorization", "authorization"):
        value = params.get(key)
        if isinstance(value, str):
            try:
                return _bearer(value)
            except InvalidToken:
                return value.strip() or None  # a bare token under Authorization
    token = params.get("token")
    return token if isinstance(token, str) and token else None


async def close_when_expired(websocket: WebSocket, expires_at: float, leeway: float) -> None:
    """A WebSocket lives no longer than the token it was opened with: once that expires, it
    is closed with 4403 (the client reconnects with a fresh token)."""
    await asyncio.sleep(max(expires_at + leeway - time.time(), 0))
    if websocket.application_state == WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError):  # closed meanwhile by the client
            await websocket.close(code=4403, reason="token expired")


class RejectingGraphQLWSHandler(BaseGraphQLWSHandler[Any, Any]):
    """The legacy graphql-ws protocol, refusing a connection with close code 4403 as
    graphql-transport-ws does; strawberry's own handler closes with 1011, which clients take
    for a server fault and retry. Otherwise strawberry's handle_connection_init as it is."""

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        if self.connection_acknowledged:
            # As graphql-transport-ws: each init would verify a token and start an expiry
            # timer again, so a socket gets one.
            await self.websocket.close(code=4429, reason="Too many initialisation requests")
            return
        payload = message.get("payload")
        if payload is not None and not isinstance(payload, dict):
            await self.send_message({"type": "connection_error"})
            await self.websocket.close(code=1000, reason="")
            return
        if hasattr(self.context, "connection_params"):
            self.context.connection_params = payload
        try:
            ack_payload = await self.view.on_ws_connect(self.context)
        except ConnectionRejectionError as rejection:
            await self.send_message({"type": "connection_error", "payload": rejection.payload})
            await self.websocket.close(code=4403, reason="Forbidden")
            return
        if isinstance(ack_payload, dict):
            await self.send_message({"type": "connection_ack", "payload": ack_payload})
        else:
            await self.send_message({"type": "connection_ack"})
        self.connection_acknowledged = True
        if self.keep_alive:
            self.keep_alive_task = asyncio.create_task(self.handle_keep_alive())
