"""Request ids and request logs, over real HTTP: the id taken from or added to X-Request-ID,
carried into every log line of the request; JSON lines, or text on a terminal."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from graph.runtime.logs import configure_logging
from graph.runtime.settings import Settings
from tests.support.ops import running


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """The process's logging, JSON lines into a buffer, put back as it was afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging(Settings(log_format="json", log_level="debug"), stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line]


async def test_every_line_of_a_request_carries_its_id(
    engine: AsyncEngine, database_url: str, log_stream: io.StringIO
) -> None:
    async with running(engine, database_url) as server:
        response = await server.http.post(
            "/graphql",
            json={"query": "{ order(id: 1) { nosuchfield } }"},
            headers={"X-Request-ID": "req-abc.123"},
        )
        assert response.headers["x-request-id"] == "req-abc.123"
        placed = await server.http.post(
            "/graphql",
            json={
                "query": 'mutation { placeOrder(input: {customerId: "c", items: [], '
                'shippingAddress: {line1: "1", city: "c", postalCode: "1", country: "US"}}) '
                "{ __typename } }"
            },
        )
        generated = placed.headers["x-request-id"]
        refused = await server.http.get("/graphql?query={x}", headers={"X-Request-ID": "bad id\t!"})
    assert len(generated) == 32
    assert int(generated, 16) >= 0
    assert refused.headers["x-request-id"] not in ("bad id\t!", generated)

    logged = lines(log_stream)
    ours = [line for line in logged if line.get("request_id") == "req-abc.123"]
    # the GraphQL error logged while handling it, then the request's own line
    assert [line["logger"] for line in ours] == ["ordergraph.graph", "ordergraph.request"]
    assert "nosuchfield" in ours[0]["message"]
    request = ours[-1]
    assert (request["method"], request["path"]) == ("POST", "/graphql")
    assert request["status"] == 200
    assert request["outcome"] == "invalid"
    assert request["operation"] == "-"
    assert request["duration_ms"] > 0
    assert request["subject"] is None  # reserved for the caller's identity
    assert request["level"] == "info"
    assert request["time"].endswith("+00:00")

    (mutation,) = [
        line
        for line in logged
        if line.get("request_id") == generated and line["logger"] == "ordergraph.request"
    ]
    assert (mutation["operation"], mutation["outcome"]) == ("placeOrder", "RuleViolated")


async def test_a_websocket_connection_gets_a_request_id(
    engine: AsyncEngine, database_url: str
) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    async with running(engine, database_url) as server:
        ws_url = server.url.replace("http", "ws") + "/graphql"
        async with connect(
            ws_url,
            subprotocols=[Subprotocol("graphql-transport-ws")],
            additional_headers={"X-Request-ID": "ws-7"},
        ) as ws:
            assert ws.response is not None
            assert ws.response.headers["x-request-id"] == "ws-7"


async def test_request_lines_can_be_turned_off(
    engine: AsyncEngine, database_url: str, log_stream: io.StringIO
) -> None:
    async with running(engine, database_url, request_log=False) as server:
        response = await server.http.post("/graphql", json={"query": "{ __typename }"})
        assert response.status_code == 200
    assert not [line for line in lines(log_stream) if line["logger"] == "ordergraph.request"]


def test_a_terminal_gets_readable_lines_and_a_pipe_gets_json() -> None:
    from graph.runtime.logs import request_id

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    terminal, pipe = Terminal(), io.StringIO()
    try:
        for stream in (terminal, pipe):
            configure_logging(Settings(log_format="auto"), stream)
            token = request_id.set("r-1")
            try:
                logging.getLogger("ordergraph.test").info("hello %s", "there", extra={"n": 2})
            finally:
                request_id.reset(token)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    text = terminal.getvalue().strip()
    assert text.endswith("INFO ordergraph.test [r-1] hello there n=2"), text
    entry = json.loads(pipe.getvalue())
    assert (entry["message"], entry["request_id"], entry["n"]) == ("hello there", "r-1", 2)
