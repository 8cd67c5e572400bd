"""Budgets for what a client can make the server hold, end to end over real HTTP and
WebSocket: each cheap request that used to exhaust the server is now refused or bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from graphql import get_introspection_query
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from graph.http import GRAPHQL_RESPONSE_JSON, graphql_app
from graph.runtime.slow_clients import http_protocol
from tests.support.graphql import ORDER_FIELDS, Server, running
from tests.support.http_probe import SCHEMA, Probe
from tests.support.serving import GraphQLWebSocketError, graphql_ws, serve_app


@pytest.fixture
async def server(engine: AsyncEngine, database_url: str) -> AsyncIterator[Server]:
    async with running(engine, database_url) as server:
        yield server


ORDER_CHANGED = "subscription($id: ID!) { orderChanged(id: $id) { version } }"


@contextlib.contextmanager
def order_view_selects() -> Any:
    """Every SELECT on order_views that any engine of this process runs while inside."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM order_views" in statement:
            statements.append(statement)

    sa.event.listen(Engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        sa.event.remove(Engine, "before_cursor_execute", count)


async def _caught_up(server: Server, position: int) -> None:
    body = await server.gql(
        "query($p: Position) { projections(atLeast: $p) { name } }", {"p": position}
    )
    assert "stale" not in body.get("extensions", {})


async def test_idle_order_changed_subscriptions_cost_no_reads_per_write(
    engine: AsyncEngine, database_url: str
) -> None:
    async with (
        running(engine, database_url, max_subscriptions_per_socket=1000) as server,
        graphql_ws(server.url + "/graphql") as ws,
    ):
        watched = await server.place()
        with order_view_selects() as selects:
            live = await ws.subscribe(ORDER_CHANGED, {"id": watched["orderId"]})
            assert await anext(live) == {"orderChanged": {"version": 1}}
            for n in range(300):
                await ws.subscribe(ORDER_CHANGED, {"id": f"made-up-{n}"})
            async with asyncio.timeout(20):
                while server.app.state.services.budgets.subscriptions < 301:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)

            for _ in range(10):
                last = await server.place()
                await _caught_up(server, last["position"])
            paid = await server.send(
                "payOrder", "PayOrderInput", orderId=watched["orderId"], amount="40.28"
            )
            assert await anext(live) == {"orderChanged": {"version": 2}}

        # One first read per subscription; then at most a range query per order_views
        # advance, one read of the watched order and the projector's own read of it when it
        # was paid: nothing per idle subscriber. Before, each of the 301 re-read its order
        # on every advance: thousands of SELECTs.
        assert paid["__typename"] == "CommandAccepted"
        assert len(selects) <= 301 + 2 * 11 + 2, len(selects)


async def test_subscriptions_are_capped_per_socket_and_in_total(
    engine: AsyncEngine, database_url: str
) -> None:
    limits = {"max_subscriptions": 3, "max_subscriptions_per_socket": 2}
    async with running(engine, database_url, **limits) as server:
        order_id = (await server.place())["orderId"]
        budgets = server.app.state.services.budgets
        async with graphql_ws(server.url + "/graphql") as first:
            held = [await first.subscribe(ORDER_CHANGED, {"id": order_id}) for _ in range(2)]
            for subscription in held:
                await anext(subscription)
            over_socket = await first.subscribe(ORDER_CHANGED, {"id": order_id})
            with pytest.raises(GraphQLWebSocketError, match="Subscription limit reached"):
                await anext(over_socket)

            async with graphql_ws(server.url + "/graphql", "graphql-ws") as second:
                third = await second.subscribe(ORDER_CHANGED, {"id": order_id})
                await anext(third)
                over_total = await second.subscribe(ORDER_CHANGED, {"id": order_id})
                with pytest.raises(GraphQLWebSocketError, match="maximum of 3 subscriptions"):
                    await anext(over_total)
                assert budgets.subscriptions == 3

        # The sockets closed: everything they held is given back.
        async with asyncio.timeout(10):
            while budgets.subscriptions:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert server.app.state.services.order_changes.watched == 0
        async with graphql_ws(server.url + "/graphql") as again:
            assert await anext(await again.subscribe(ORDER_CHANGED, {"id": order_id}))


async def test_waits_far_beyond_the_head_are_refused(
    engine: AsyncEngine, database_url: str
) -> None:
    async with running(engine, database_url, max_wait_ahead=100) as server:
        object.__setattr__(server.app.state.services, "read_wait_seconds", 0.2)
        head = (await server.place())["position"]

        far = await server.http.post(
            "/graphql",
            json={
                "query": 'query($p: Position) { order(id: "x", atLeast: $p) { id } }',
                "variables": {"p": head + 1_000_000},
            },
        )
        near = await server.gql(
            'query($p: Position) { order(id: "x", atLeast: $p) { id } }', {"p": head + 50}
        )
        async with graphql_ws(server.url + "/graphql") as ws:
            waiter = await ws.subscribe(
                "subscription($p: Position!) { caughtUp(position: $p) { position } }",
                {"p": head + 1_000_000},
            )
            with pytest.raises(GraphQLWebSocketError, match="beyond the event store's head"):
                await anext(waiter)

        (error,) = far.json()["errors"]
        assert "beyond the event store's head" in error["message"]
        assert near["extensions"]["stale"][0]["reason"] == "timeout"  # allowed, and waited
        assert server.app.state.services.budgets.subscriptions == 0


async def test_held_reads_beyond_the_budget_are_answered_stale_at_once(
    engine: AsyncEngine, database_url: str
) -> None:
    async with running(engine, database_url, max_held_reads=2) as server:
        head = (await server.place())["position"]
        await _caught_up(server, head)
        object.__setattr__(server.app.state.services, "read_wait_seconds", 4)
        query = 'query($p: Position) { order(id: "x", atLeast: $p) { id } }'
        holding = [asyncio.create_task(server.gql(query, {"p": head + 10})) for _ in range(2)]
        budgets = server.app.state.services.budgets
        async with asyncio.timeout(10):
            while budgets.held_reads < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

        started = time.monotonic()
        busy = await server.gql(query, {"p": head + 10})
        answered_in = time.monotonic() - started
        reached = await server.gql(query, {"p": head})  # already there: no wait needed

        assert busy["extensions"]["stale"][0]["reason"] == "busy"
        assert answered_in < 2.0  # the holders wait 4 s; this one did not queue behind them
        assert "extensions" not in reached or "stale" not in reached["extensions"]
        for task in holding:
            assert (await task)["extensions"]["stale"][0]["reason"] == "timeout"


def _aliased_pages(n: int, fields: str) -> str:
    return (
        "{ "
        + " ".join(
            f"a{i}: orders(first: 100) {{ edges {{ node {{ {fields} }} }} }}" for i in range(n)
        )
        + " }"
    )


async def test_costly_queries_are_refused_before_they_run(server: Server) -> None:
    await server.place()
    refused = {
        # The finding: 6 KB of request, 1.2 MB of answer.
        "30 aliased pages": (_aliased_pages(30, ORDER_FIELDS.split("lines")[0]), {}),
        "a page size by variable": (
            "query($n: Int) { "
            + " ".join(
                f"a{i}: orders(first: $n) {{ edges {{ node {{ {ORDER_FIELDS} }} }} }}"
                for i in range(3)
            )
            + " }",
            {"n": 100},
        ),
        "a page size by a variable's default": (
            "query($n: Int = 100) { "
            + " ".join(
                f"a{i}: orders(first: $n) {{ edges {{ node {{ {ORDER_FIELDS} }} }} }}"
                for i in range(3)
            )
            + " }",
            {},
        ),
        # Our depth limit does not look inside introspection; graphql-core's introspection
        # depth rule and the cost do.
        "nested introspection": (
            "{ __schema { types { " + "fields { type { " * 8 + "name" + " } }" * 8 + " } } }",
            {},
        ),
    }
    for name, (query, variables) in refused.items():
        response = await server.http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Accept": GRAPHQL_RESPONSE_JSON},
        )
        assert response.status_code == 400, (name, response.text)
        message = response.json()["errors"][0]["message"]
        assert "query cost" in message or "introspection depth" in message, name

    desk = await server.gql(
        "query($n: Int) { orders(first: $n) { edges { node { " + ORDER_FIELDS + " } } } }",
        {"n": 20},
    )
    introspection = await server.gql(get_introspection_query(descriptions=True))
    assert desk["data"]["orders"]["edges"]
    assert introspection["data"]["__schema"]["types"]


@pytest.fixture
async def toy_url() -> AsyncIterator[str]:
    probe = Probe()

    async def context(_request: Request | WebSocket, _response: Response | None) -> Probe:
        return probe

    app = graphql_app(SCHEMA, max_body_bytes=64 * 1024, context_getter=context, body_timeout=0.5)
    async with serve_app(app, http=http_protocol(0.5)) as url:
        yield url


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    received = b""
    async with asyncio.timeout(10):
        while chunk := await reader.read(65536):
            received += chunk
    return received


async def test_slow_headers_are_cut_off(toy_url: str) -> None:
    host, port = toy_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\n")

    async def dribble() -> None:
        with contextlib.suppress(ConnectionError):
            for n in range(100):
                writer.write(f"X-Slow-{n}: 1\r\n".encode())
                await writer.drain()
                await asyncio.sleep(0.1)

    dribbling = asyncio.create_task(dribble())
    received = await _until_closed(reader)
    dribbling.cancel()
    writer.close()

    assert received == b""
    assert time.monotonic() - started < 5  # closed at the deadline, not after 100 headers
    async with httpx.AsyncClient(base_url=toy_url) as client:  # others are served as ever
        assert (await client.post("/", json={"query": "{ hello }"})).status_code == 200


async def test_a_body_that_never_ends_gets_408(toy_url: str) -> None:
    host, port = toy_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"que\r\n'
    )
    await writer.drain()

    received = await _until_closed(reader)
    writer.close()

    assert received.startswith(b"HTTP/1.1 408"), received
    assert b"Request body not received in time." in received


async def test_one_document_is_priced_by_the_page_size_each_request_gives(server: Server) -> None:
    """Verdicts are kept per document: the same text asked again with another ``first``
    (given, null, or left to its default) gets the price of what it will run."""
    await _caught_up(server, (await server.place())["position"])
    query = (
        "query($n: Int = 100) { a0: orders(first: $n) { edges { node { " + ORDER_FIELDS + " } } } }"
    )
    # null is the default page (20), a variable left out its default (100): not the same
    asked = [({"n": 1}, 200), ({"n": 100}, 400), ({"n": 1}, 200), ({}, 400), ({"n": None}, 200)]
    asked += [({"n": 100}, 400), ({"n": 2}, 200)]
    for variables, status in asked:
        response = await server.http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Accept": GRAPHQL_RESPONSE_JSON},
        )
        assert response.status_code == status, (variables, response.text)
        if status == 400:
            assert "query cost" in response.json()["errors"][0]["message"]
        else:
            assert response.json()["data"]["a0"]["edges"], variables
