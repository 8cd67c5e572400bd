"""``ordergraph subscribe``: print a subscription's events from a running server, one JSON
line each (graphql-transport-ws). A tool for the README's tour and for operators."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import connect
from websockets.typing import Subprotocol


async def subscribe(url: str, query: str, variables: dict[str, Any] | None = None) -> None:
    ws_url = "ws" + url.removeprefix("http") if url.startswith("http") else url
    async with connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": "1",
                    "payload": {"query": query, "variables": variables or {}},
                }
            )
        )
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif message["type"] == "next":
                print(json.dumps(message["payload"]), flush=True)
            elif message["type"] in ("error", "complete"):
                if message["type"] == "error":
                    print(json.dumps(message["payload"]), flush=True)
                return
