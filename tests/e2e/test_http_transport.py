"""GraphQL over HTTP and WebSocket, end to end against a real uvicorn, on a toy schema."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from graph.http import GRAPHQL_RESPONSE_JSON, graphql_app, response_media_type, schema_extensions
from tests.support.http_probe import SCHEMA, Probe, Query
from tests.support.serving import (
    GraphQLWebSocketError,
    Protocol,
    graphql_ws,
    serve_app,
    serve_process,
)

MAX_BODY = 4096
GRAPHQL_RESPONSE = {"Accept": GRAPHQL_RESPONSE_JSON}
LEGACY_JSON = {"Accept": "application/json"}


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
async def base_url(probe: Probe) -> AsyncIterator[str]:
    async def context(_request: Request | WebSocket, _response: Response | None) -> Probe:
        return probe

    app = graphql_app(SCHEMA, max_body_bytes=MAX_BODY, context_getter=context)
    async with serve_app(app) as url:
        yield url + "/"


@pytest.fixture
async def client(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        yield client


async def test_query_over_get(client: httpx.AsyncClient) -> None:
    response = await client.get("", params={"query": "{ hello }"}, headers=GRAPHQL_RESPONSE)
    assert response.status_code == 200
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert response.json() == {"data": {"hello": "hello world"}}


async def test_query_over_get_with_variables(client: httpx.AsyncClient) -> None:
    params = {"query": "query($n: String!) { hello(name: $n) }", "variables": '{"n": "x"}'}
    response = await client.get("", params=params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"data": {"hello": "hello x"}}


async def test_mutation_over_get_is_refused_with_405(
    client: httpx.AsyncClient, probe: Probe
) -> None:
    response = await client.get("", params={"query": "mutation { bump }"})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert probe.bumps == 0


async def test_mutation_over_post(client: httpx.AsyncClient, probe: Probe) -> None:
    response = await client.post("", json={"query": "mutation { bump }"})
    assert response.status_code == 200
    assert response.json() == {"data": {"bump": 1}}
    assert probe.bumps == 1


async def test_other_methods_are_refused_with_405(client: httpx.AsyncClient) -> None:
    response = await client.put("", json={"query": "{ hello }"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"


async def test_syntax_error_is_400_with_graphql_response_json(client: httpx.AsyncClient) -> None:
    response = await client.post("", json={"query": "{ hello "}, headers=GRAPHQL_RESPONSE)
    assert response.status_code == 400
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    body = response.json()
    assert "data" not in body
    assert "Syntax Error" in body["errors"][0]["message"]


async def test_validation_error_is_400_with_graphql_response_json(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("", json={"query": "{ nope }"}, headers=GRAPHQL_RESPONSE)
    assert response.status_code == 400
    assert response.headers["content-type"] == GRAPHQL_RESPONSE_JSON
    assert "Cannot query field 'nope'" in response.json()["errors"][0]["message"]


async def test_bad_variables_are_400_with_graphql_response_json(
    client: httpx.AsyncClient,
) -> None:
    query = "query($n: String!) { hello(name: $n) }"
    response = await client.post(
        "", json={"query": query, "variables": {"n": 5}}, headers=GRAPHQL_RESPONSE
    )
    assert response.status_code == 400
    assert "$n" in response.json()["errors"][0]["message"]


async def test_graphql_errors_are_200_with_legacy_json(client: httpx.AsyncClient) -> None:
    for query in ("{ hello ", "{ nope }"):
        response = await client.post("", json={"query": query}, headers=LEGACY_JSON)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json()["errors"]


async def test_invalid_json_body_is_400(client: httpx.AsyncClient) -> None:
    for headers in (GRAPHQL_RESPONSE, LEGACY_JSON):
        response = await client.post(
            "", content=b"{not json", headers={**headers, "Content-Type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["message"]


async def test_missing_query_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("", json={"variables": {}}, headers=GRAPHQL_RESPONSE)
    assert response.status_code == 400


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    padding = "x" * MAX_BODY
    response = await client.post("", json={"query": "{ hello }", "variables": {"p": padding}})
    assert response.status_code == 413


async def test_body_over_the_limit_without_content_length_is_413(
    client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ hello }", "variables": {"p": "'
        for _ in range(8):
            yield b"x" * 1024
        yield b'"}}'

    response = await client.post("", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413


async def test_too_deep_query_is_refused(client: httpx.AsyncClient) -> None:
    query = "{ node { child { child { child { child { name } } } } } }"
    for _ in range(2):  # the second time from the document cache
        response = await client.post("", json={"query": query}, headers=GRAPHQL_RESPONSE)
        assert response.status_code == 400
        assert "exceeds maximum operation depth" in response.json()["errors"][0]["message"]


async def test_too_many_aliases_are_refused(client: httpx.AsyncClient) -> None:
    query = "{ a: hello b: hello c: hello d: hello }"
    for _ in range(2):  # the second time from the document cache
        response = await client.post("", json={"query": query}, headers=GRAPHQL_RESPONSE)
        assert response.status_code == 400
        assert "aliases found" in response.json()["errors"][0]["message"]


async def test_too_many_tokens_are_refused(client: httpx.AsyncClient) -> None:
    query = "{ " + " ".join(["hello"] * 300) + " }"
    for _ in range(2):  # the second time from the document cache
        response = await client.post("", json={"query": query}, headers=GRAPHQL_RESPONSE)
        assert response.status_code == 400
        assert "more than 200 tokens" in response.json()["errors"][0]["message"]


async def test_each_schema_validates_with_its_own_limits() -> None:
    lax = strawberry.Schema(
        Query, extensions=schema_extensions(max_depth=10, max_aliases=3, max_tokens=200)
    )
    deep = "{ node { child { child { child { child { name } } } } } }"
    assert (await lax.execute(deep)).errors is None
    strict = await SCHEMA.execute(deep)
    assert strict.errors
    assert "exceeds maximum operation depth" in strict.errors[0].message
    assert (await lax.execute(deep)).errors is None


async def test_unexpected_error_is_masked_and_logged(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="ordergraph.graph"):
        response = await client.post("", json={"query": "{ hello broken }"})
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"hello": "hello world", "broken": None}
    assert body["errors"][0]["message"] == "Unexpected error."
    assert body["errors"][0]["path"] == ["broken"]
    assert "secret" not in response.text
    logged = [r for r in caplog.records if r.name == "ordergraph.graph"]
    assert logged
    assert logged[0].exc_info is not None
    assert isinstance(logged[0].exc_info[1], RuntimeError)
    assert "secret database detail" in caplog.text


async def test_graphiql_for_browsers(client: httpx.AsyncClient) -> None:
    response = await client.get("", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_subscription_runs_to_completion(base_url: str, protocol: Protocol) -> None:
    async with graphql_ws(base_url, protocol) as ws:
        subscription = await ws.subscribe("subscription { count(upTo: 3) }")
        received = [data async for data in subscription]
    assert received == [{"count": 1}, {"count": 2}, {"count": 3}]


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_unsubscribing_ends_the_server_generator(
    base_url: str, probe: Probe, protocol: Protocol
) -> None:
    async with graphql_ws(base_url, protocol) as ws:
        query = "subscription($n: Int!) { count(upTo: $n, hold: true) }"
        subscription = await ws.subscribe(query, {"n": 1})
        assert await anext(subscription) == {"count": 1}
        assert not probe.generator_finished.is_set()
        await subscription.unsubscribe()
        await asyncio.wait_for(probe.generator_finished.wait(), 10)


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_subscription_errors_are_masked_and_logged(
    base_url: str, protocol: Protocol, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ordergraph.graph")
    async with graphql_ws(base_url, protocol) as ws:
        subscription = await ws.subscribe("subscription { failing }")
        assert await anext(subscription) == {"failing": 1}
        with pytest.raises(GraphQLWebSocketError) as raised:
            await anext(subscription)
    assert "Unexpected error." in str(raised.value)
    assert "secret" not in str(raised.value)
    assert "secret subscription detail" in caplog.text


async def test_two_subscriptions_on_one_connection(base_url: str) -> None:
    async with graphql_ws(base_url) as ws:
        first = await ws.subscribe("subscription { count(upTo: 2) }")
        second = await ws.subscribe("subscription { count(upTo: 1) }")
        assert [data async for data in second] == [{"count": 1}]
        assert [data async for data in first] == [{"count": 1}, {"count": 2}]


async def test_serve_process_runs_a_command_on_a_free_port() -> None:
    command = [sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
    async with serve_process(command, dict(os.environ)) as url, httpx.AsyncClient() as client:
        response = await client.get(url + "/")
    assert response.status_code == 200


async def test_serve_process_reports_a_server_that_dies_at_start() -> None:
    command = [sys.executable, "-c", "print('no database'); raise SystemExit(3)"]
    with pytest.raises(RuntimeError, match=r"exit code 3\)(.|\n)*no database"):
        async with serve_process(command, dict(os.environ)):
            pass


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, application/json;q=0.9", GRAPHQL_RESPONSE_JSON),
        (f"application/json, {GRAPHQL_RESPONSE_JSON};q=0.5", "application/json"),
        (f"{GRAPHQL_RESPONSE_JSON};q=0", "application/json"),
    ],
)
def test_media_type_negotiation(accept: str | None, expected: str) -> None:
    assert response_media_type(accept) == expected
