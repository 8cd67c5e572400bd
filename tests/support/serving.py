"""End-to-end test harness: real servers on real sockets, and a small GraphQL WebSocket client.

- ``serve_app``: an ASGI app under uvicorn inside the test's event loop.
- ``serve_process``: a server command line in a subprocess (for crash/restart tests).
- ``graphql_ws``: both GraphQL WebSocket protocols, several subscriptions per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import socket
import tempfile
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import uvicorn
from starlette.types import ASGIApp
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

STARTUP_TIMEOUT = 20.0
MESSAGE_TIMEOUT = 10.0
POLL_INTERVAL = 0.02

Protocol = Literal["graphql-transport-ws", "graphql-ws"]


@contextlib.asynccontextmanager
async def serve_app(app: ASGIApp, *, host: str = "127.0.0.1", **options: Any) -> AsyncIterator[str]:
    """Run ``app`` under uvicorn in this event loop (``options``: more uvicorn.Config
    options); yield its base URL."""
    # Bind the socket ourselves (port 0) so there is no window where another process could
    # take the port between choosing it and listening on it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="auto", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            # uvicorn offers no event for "started", only the flag: poll it.
            while not server.started:
                if task.done():
                    task.result()  # startup failure: raise it here
                    raise RuntimeError("uvicorn exited before it started")
                await asyncio.sleep(POLL_INTERVAL)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, STARTUP_TIMEOUT)
        sock.close()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_process(
    args: list[str], env: dict[str, str], *, host: str = "127.0.0.1"
) -> AsyncIterator[str]:
    """Start ``args`` (``{port}`` in any argument is replaced by a free port) and yield the
    base URL once the port answers HTTP. Stops it with SIGTERM, then SIGKILL."""
    port = free_port(host)
    command = [arg.replace("{port}", str(port)) for arg in args]
    base_url = f"http://{host}:{port}"
    with tempfile.TemporaryFile() as output:
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=output, stderr=asyncio.subprocess.STDOUT
        )
        try:
            await _wait_until_serving(process, base_url, output)
            yield base_url
        finally:
            await stop_process(process)


async def _wait_until_serving(
    process: asyncio.subprocess.Process, base_url: str, output: Any
) -> None:
    async with httpx.AsyncClient(timeout=1.0) as client:
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                while True:
                    if process.returncode is not None:
                        break
                    with contextlib.suppress(httpx.TransportError):
                        await client.get(base_url + "/")
                        return
                    await asyncio.sleep(POLL_INTERVAL * 5)
        except TimeoutError:
            pass
    output.seek(0)
    log = output.read().decode(errors="replace")[-4000:]
    raise RuntimeError(f"server did not start (exit code {process.returncode}):\n{log}")


async def stop_process(process: asyncio.subprocess.Process, *, grace: float = 10.0) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
    await process.wait()


class GraphQLWebSocketError(Exception):
    pass


class Subscription:
    """One operation on a ``GraphQLWebSocket``: iterate for each ``data`` payload."""

    def __init__(self, ws: GraphQLWebSocket, operation_id: str) -> None:
        self._ws = ws
        self.id = operation_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.done = False

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self.done:
            raise StopAsyncIteration
        async with asyncio.timeout(MESSAGE_TIMEOUT):
            message = await self.queue.get()
        kind = message["type"]
        if kind == "complete":
            self.done = True
            raise StopAsyncIteration
        if kind in ("error", "connection_error", "closed"):
            self.done = True
            raise GraphQLWebSocketError(message)
        payload: dict[str, Any] = message["payload"]
        if payload.get("errors"):
            raise GraphQLWebSocketError(payload["errors"])
        data: dict[str, Any] = payload["data"]
        return data

    async def unsubscribe(self) -> None:
        """Stop early: the server ends the operation (and its resolver's generator)."""
        if not self.done:
            self.done = True
            stop = "complete" if self._ws.protocol == "graphql-transport-ws" else "stop"
            await self._ws.send({"type": stop, "id": self.id})
        self._ws.subscriptions.pop(self.id, None)


class GraphQLWebSocket:
    def __init__(self, connection: ClientConnection, protocol: Protocol) -> None:
        self.connection = connection
        self.protocol = protocol
        self.subscriptions: dict[str, Subscription] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        async with asyncio.timeout(MESSAGE_TIMEOUT):
            message: dict[str, Any] = json.loads(await self.connection.recv())
        return message

    async def initialize(self, payload: dict[str, Any] | None = None) -> None:
        await self.send({"type": "connection_init", "payload": payload or {}})
        while (message := await self.receive())["type"] != "connection_ack":
            if message["type"] not in ("ka", "ping"):
                raise GraphQLWebSocketError(message)
        self._reader = asyncio.create_task(self._read())

    async def subscribe(self, query: str, variables: dict[str, Any] | None = None) -> Subscription:
        subscription = Subscription(self, str(next(self._ids)))
        self.subscriptions[subscription.id] = subscription
        start = "subscribe" if self.protocol == "graphql-transport-ws" else "start"
        payload = {"query": query, "variables": variables or {}}
        await self.send({"type": start, "id": subscription.id, "payload": payload})
        return subscription

    async def _read(self) -> None:
        try:
            async for raw in self.connection:
                message = json.loads(raw)
                if message["type"] == "ping":
                    await self.send({"type": "pong"})
                elif (subscription := self.subscriptions.get(message.get("id", ""))) is not None:
                    subscription.queue.put_nowait(message)
        finally:
            # Wake every waiter: the connection is gone.
            for subscription in self.subscriptions.values():
                subscription.queue.put_nowait({"type": "closed"})

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self.connection.close()


@contextlib.asynccontextmanager
async def graphql_ws(
    url: str,
    protocol: Protocol = "graphql-transport-ws",
    *,
    payload: dict[str, Any] | None = None,
) -> AsyncIterator[GraphQLWebSocket]:
    """Connect (``http://`` URLs become ``ws://``), initialize with ``payload`` (e.g. a
    token), and close on exit."""
    ws_url = "ws" + url.removeprefix("http") if url.startswith("http") else url
    async with connect(ws_url, subprotocols=[Subprotocol(protocol)]) as connection:
        ws = GraphQLWebSocket(connection, protocol)
        try:
            await ws.initialize(payload)
            yield ws
        finally:
            await ws.close()
