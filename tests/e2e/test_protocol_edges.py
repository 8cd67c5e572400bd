"""Malformed requests, on HTTP and on both WebSocket protocols, against a real uvicorn: each is
a clean refusal (400 with a GraphQL error body; close code 4400) and one log line at most,
never a 500, a traceback or a socket dropped without a code."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from graph.http import GRAPHQL_RESPONSE_JSON, graphql_app
from tests.support.http_probe import SCHEMA, Probe
from tests.support.serving import serve_app

JSON = {"Content-Type": "application/json"}
DEEP = "[" * 2000 + "]" * 2000
HUGE_INT = "1" * 5000

MALFORMED_BODIES = {
    "null": b"null",
    "number": b"12",
    "string": b'"{ hello }"',
    "bool": b"true",
    "invalid utf-8": b'{"query": "{ hello }", "x": "\xff\xfe"}',
    "huge integer": b'{"query": "{ hello }", "variables": {"n": ' + HUGE_INT.encode() + b"}}",
    "deep nesting": b'{"query": "{ hello }", "variables": {"n": ' + DEEP.encode() + b"}}",
}


@pytest.fixture
async def url() -> AsyncIterator[str]:
    probe = Probe()

    async def context(_request: Request | WebSocket, _response: Response | None) -> Probe:
        return probe

    app = graphql_app(
        SCHEMA,
        max_body_bytes=64 * 1024,
        context_getter=context,
        connection_init_timeout=timedelta(seconds=0.5),
    )
    async with serve_app(app) as base:
        yield base + "/"


@pytest.fixture
async def client(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith(("application/json", GRAPHQL_RESPONSE_JSON))
    errors = response.json()["errors"]
    assert errors
    assert errors[0]["message"]


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
async def test_every_malformed_post_body_is_400(
    client: httpx.AsyncClient, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    for accept in ("application/json", GRAPHQL_RESPONSE_JSON):
        assert_refused(await client.post("", content=body, headers={**JSON, "Accept": accept}))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(
    "variables",
    ["null-is-fine", "12", '"x"', "true", "{" * 1000, HUGE_INT, DEEP],
    ids=["null", "number", "string", "bool", "broken", "huge integer", "deep nesting"],
)
async def test_every_malformed_get_variables_is_400(
    client: httpx.AsyncClient, variables: str
) -> None:
    if variables == "null-is-fine":
        response = await client.get("", params={"query": "{ hello }", "variables": "null"})
        assert response.status_code == 200, response.text
        return
    response = await client.get("", params={"query": "{ hello }", "variables": variables})
    assert_refused(response)


async def test_a_subscription_over_http_is_refused(client: httpx.AsyncClient) -> None:
    for method in ("GET", "POST"):
        query = "subscription { count(upTo: 1) }"
        if method == "GET":
            response = await client.get("", params={"query": query})
        else:
            response = await client.post("", json={"query": query})
        assert response.status_code in (400, 405), response.text
        assert "Unexpected error" not in response.text
        assert response.json()["errors"][0]["message"]


async def test_two_operations_without_an_operation_name_are_refused(
    client: httpx.AsyncClient,
) -> None:
    document = 'query A { hello } query B { hello(name: "b") }'

    ambiguous = await client.post(
        "", json={"query": document}, headers={"Accept": GRAPHQL_RESPONSE_JSON}
    )
    named = await client.post("", json={"query": document, "operationName": "B"})

    assert_refused(ambiguous)
    assert "operationName" in ambiguous.json()["errors"][0]["message"]
    assert named.json() == {"data": {"hello": "hello b"}}


async def _closed_with(ws_url: str, protocol: str, messages: list[str]) -> int | None:
    async with connect(ws_url, subprotocols=[Subprotocol(protocol)]) as ws:
        for message in messages:
            await ws.send(message)
        try:
            async with asyncio.timeout(10):
                while True:
                    await ws.recv()
        except ConnectionClosed:
            pass
        return ws.close_code


INIT = json.dumps({"type": "connection_init", "payload": {}})
TRANSPORT_WS_UNPARSABLE = {
    "not json": "{nope",
    "not an object": "[1, 2]",
    "a string": '"subscribe"',
    "huge integer": '{"type": "ping", "n": ' + HUGE_INT + "}",
    "deep nesting": '{"type": "ping", "n": ' + DEEP + "}",
    "no type": '{"id": "1"}',
    "payload not an object": '{"type": "subscribe", "id": "1", "payload": "{ hello }"}',
    "query not a string": '{"type": "subscribe", "id": "1", "payload": {"query": 5}}',
}
LEGACY_UNPARSABLE = {
    "not json": "{nope",
    "not an object": "[1, 2]",
    "huge integer": '{"type": "start", "id": "1", "n": ' + HUGE_INT + "}",
    "deep nesting": '{"type": "start", "n": ' + DEEP + "}",
    "no type": '{"id": "1", "payload": {"query": "{ hello }"}}',
    "start without id": '{"type": "start", "payload": {"query": "{ hello }"}}',
    "start without query": '{"type": "start", "id": "1", "payload": {}}',
    "stop without id": '{"type": "stop"}',
}


@pytest.mark.parametrize(
    "message", TRANSPORT_WS_UNPARSABLE.values(), ids=TRANSPORT_WS_UNPARSABLE.keys()
)
async def test_an_unparsable_graphql_transport_ws_message_closes_with_4400(
    url: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    code = await _closed_with(
        "ws" + url.removeprefix("http"), "graphql-transport-ws", [INIT, message]
    )
    assert code == 4400
    lines = [r for r in caplog.records if r.name == "ordergraph.graph"]
    assert len(lines) == 1
    assert not lines[0].exc_info
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("message", LEGACY_UNPARSABLE.values(), ids=LEGACY_UNPARSABLE.keys())
async def test_an_unparsable_legacy_graphql_ws_message_closes_with_4400(
    url: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    code = await _closed_with("ws" + url.removeprefix("http"), "graphql-ws", [INIT, message])
    assert code == 4400
    lines = [r for r in caplog.records if r.name == "ordergraph.graph"]
    assert len(lines) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_socket_that_never_sends_connection_init_is_closed(url: str, protocol: str) -> None:
    code = await _closed_with("ws" + url.removeprefix("http"), protocol, [])
    assert code == 4408


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_a_second_connection_init_closes_the_socket_with_4429(
    url: str, protocol: str
) -> None:
    code = await _closed_with("ws" + url.removeprefix("http"), protocol, [INIT, INIT])
    assert code == 4429
