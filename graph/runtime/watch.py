"""``ordergraph subscribe``: print a subscription's events from a running server, one JSON
line each (graphql-transport-ws). A tool for the README's tour and for operators.

It ends true when the server completes the subscription without errors, and false (the
command then exits non-zero) when the server answers with errors, refuses the operation, or
the connection cannot be made or is lost; what went wrong goes to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException
from websockets.typing import Subprotocol


def _complain(message: str) -> None:
    print(f"ordergraph: {message}", file=sys.stderr, flush=True)


async def subscribe(
    url: str, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
) -> bool:
    ws_url = "ws" + url.removeprefix("http") if url.startswith("http") else url
    try:
        return await _subscribe(ws_url, query, variables, token)
    except (OSError, WebSocketException) as error:
        _complain(f"subscription to {ws_url} failed: {error}")
        return False


async def _subscribe(
    ws_url: str, query: str, variables: dict[str, Any] | None, token: str | None
) -> bool:
    payload = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": "1",
                    "payload": {"query": query, "variables": variables or {}},
                }
            )
        )
        ok = True
        async for raw in ws:
            message = json.loads(raw)
            kind = message["type"]
            if kind == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif kind == "next":
                print(json.dumps(message["payload"]), flush=True)
                if message["payload"].get("errors"):
                    ok = False
            elif kind == "error":
                _complain(f"the server refused the subscription: {json.dumps(message['payload'])}")
                return False
            elif kind == "complete":
                return ok
        reason = f" ({ws.close_code} {ws.close_reason})" if ws.close_code else ""
        _complain(f"{ws_url} closed the connection before the subscription completed{reason}")
        return False
