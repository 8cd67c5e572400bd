"""End to end: a real uvicorn server, real HTTP and real WebSockets, on both databases."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from graph.runtime.app import create_app
from graph.runtime.settings import Settings
from graph.schema import export_sdl
from migrations import SchemaOutOfDate
from tests.support.graphql import (
    ORDER_FIELDS,
    PLACE,
    Server,
    place_input,
    running,
)
from tests.support.serving import GraphQLWebSocket, graphql_ws, serve_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def server(engine: AsyncEngine, database_url: str) -> AsyncIterator[Server]:
    async with running(engine, database_url) as server:
        yield server


async def test_a_client_reads_its_own_write(server: Server) -> None:
    accepted = await server.place()
    assert accepted["__typename"] == "CommandAccepted"
    assert accepted["version"] == 1
    assert isinstance(accepted["position"], int)

    async with graphql_ws(server.url + "/graphql") as ws:
        caught_up = await ws.subscribe(
            "subscription($p: Position!) { caughtUp(position: $p) { position "
            "projections { name position lag state } } }",
            {"p": accepted["position"]},
        )
        events = [event async for event in caught_up]
    assert len(events) == 1
    statuses = events[0]["caughtUp"]["projections"]
    assert {s["name"] for s in statuses} == {"order_views", "customer_summaries", "daily_sales"}
    assert all(s["position"] >= accepted["position"] for s in statuses)

    order_id, at = accepted["orderId"], accepted["position"]
    body = await server.gql(
        f"query($id: ID!, $at: Position) {{ order(id: $id, atLeast: $at) {{ {ORDER_FIELDS} }}"
        ' orders(customerId: "customer-42", atLeast: $at) { totalCount '
        "edges { cursor node { id total } } pageInfo { hasNextPage endCursor } }"
        ' customer(id: "customer-42", atLeast: $at) { customerId ordersPlaced openOrders '
        "cancelledOrders totalPaid lastOrderAt } }",
        {"id": order_id, "at": at},
    )
    order = body["data"]["order"]
    assert order["status"] == "PLACED"
    assert order["total"] == "40.28"
    assert order["lines"][1] == {
        "sku": "PEN-7",
        "quantity": 3,
        "unitPrice": "0.10",
        "lineTotal": "0.30",
    }
    assert order["placedAt"].endswith("+00:00")
    assert order["shippingAddress"]["country"] == "US"
    orders = body["data"]["orders"]
    assert orders["totalCount"] == 1
    assert orders["edges"][0]["node"] == {"id": order_id, "total": "40.28"}
    assert body["data"]["customer"]["ordersPlaced"] == 1
    assert body["data"]["customer"]["openOrders"] == 1
    assert body["data"]["customer"]["totalPaid"] == "0.00"
    assert "extensions" not in body or "stale" not in body["extensions"]


async def test_a_read_that_cannot_wait_long_enough_is_marked_stale(server: Server) -> None:
    accepted = await server.place()
    services = server.app.state.services
    object.__setattr__(services, "read_wait_seconds", 0.05)

    body = await server.gql(
        'query($at: Position) { order(id: "nope", atLeast: $at) { id } }',
        {"at": accepted["position"] + 1000},
    )

    assert body["data"]["order"] is None
    (stale,) = body["extensions"]["stale"]
    assert stale["field"] == "order"
    assert stale["atLeast"] == accepted["position"] + 1000
    assert stale["positions"]["order_views"] >= 0


async def test_every_error_member_leaves_the_store_unchanged(server: Server) -> None:
    accepted = await server.place()
    order_id = accepted["orderId"]
    head = await server.store.head_position()

    bad_price = place_input(items=[{"sku": "A", "quantity": 1, "unitPrice": "1.999"}])
    invalid = (await server.gql(PLACE, {"input": bad_price}))["data"]["placeOrder"]
    assert invalid == {
        "__typename": "InvalidInput",
        "field": "items[0].unitPrice",
        "message": "items[0].unitPrice must have at most 2 decimal places",
    }
    bad_country = await server.place(
        shippingAddress={"line1": "x", "city": "y", "postalCode": "z", "country": "USA"}
    )
    assert (bad_country["__typename"], bad_country["field"]) == (
        "InvalidInput",
        "shippingAddress.country",
    )
    too_many = await server.place(items=[{"sku": "A", "quantity": 1001, "unitPrice": "1.00"}])
    assert (too_many["__typename"], too_many["rule"]) == ("RuleViolated", "quantity_range")
    wrong_amount = await server.send("payOrder", "PayOrderInput", orderId=order_id, amount="1.00")
    assert (wrong_amount["__typename"], wrong_amount["rule"]) == (
        "RuleViolated",
        "payment_equals_total",
    )
    missing = await server.send("payOrder", "PayOrderInput", orderId="no-such", amount="1.00")
    assert missing["__typename"] == "OrderNotFound"
    assert missing["orderId"] == "no-such"
    stale = await server.send(
        "cancelOrder", "CancelOrderInput", orderId=order_id, reason="x", expectedVersion=3
    )
    assert stale == {
        "__typename": "VersionConflict",
        "expectedVersion": 3,
        "actualVersion": 1,
        "message": stale["message"],
    }

    assert await server.store.head_position() == head


async def test_a_retried_command_id_returns_the_first_result(server: Server) -> None:
    first = await server.place(commandId="retry-1")
    head = await server.store.head_position()

    again = await server.place(commandId="retry-1")

    assert again == first
    assert await server.store.head_position() == head
    reused = await server.place(commandId="retry-1", customerId="someone-else")
    assert (reused["__typename"], reused["field"]) == ("InvalidInput", "commandId")


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_order_changed_streams_the_order_through_its_life(
    server: Server, protocol: Any
) -> None:
    accepted = await server.place()
    order_id = accepted["orderId"]
    routes = server.app.state.services.order_changes  # orderChanged is routed by order id
    idle = routes.watched

    async with graphql_ws(server.url + "/graphql", protocol=protocol) as ws:
        changes = await ws.subscribe(
            "subscription($id: ID!) { orderChanged(id: $id) { status version } }",
            {"id": order_id},
        )
        seen = [await anext(changes)]
        if seen[0]["orderChanged"]["version"] == 0:  # pragma: no cover - never projected yet
            seen = [await anext(changes)]
        await server.send("payOrder", "PayOrderInput", orderId=order_id, amount="40.28")
        seen.append(await anext(changes))
        await server.send(
            "shipOrder", "ShipOrderInput", orderId=order_id, carrier="UPS", trackingNumber="1Z"
        )
        seen.append(await anext(changes))
        assert routes.watched == idle + 1
        await changes.unsubscribe()
        # The server frees the subscription after reading our "complete"; no message tells
        # the client when, so watch the count (bounded).
        async with asyncio.timeout(5):
            while routes.watched != idle:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    assert [s["orderChanged"] for s in seen] == [
        {"status": "PLACED", "version": 1},
        {"status": "PAID", "version": 2},
        {"status": "SHIPPED", "version": 3},
    ]


async def test_caught_up_for_a_reached_position_emits_at_once(server: Server) -> None:
    async with graphql_ws(server.url + "/graphql") as ws:
        events = [
            e
            async for e in await ws.subscribe(
                'subscription { caughtUp(position: 0, projections: ["daily_sales"]) '
                "{ position projections { name } } }"
            )
        ]
    assert events == [{"caughtUp": {"position": 0, "projections": [{"name": "daily_sales"}]}}]


async def test_abuse_is_refused_cheaply(engine: AsyncEngine, database_url: str) -> None:
    limits = {"max_depth": 3, "max_aliases": 3, "max_tokens": 200, "max_body_bytes": 10_000}
    async with running(engine, database_url, **limits) as server:
        await _refuses_abuse(server)


async def _refuses_abuse(server: Server) -> None:
    get_mutation = await server.http.get(
        "/graphql",
        params={
            "query": 'mutation { cancelOrder(input: {orderId: "x", reason: "y"}) { __typename } }'
        },
    )
    assert get_mutation.status_code == 405
    huge = await server.http.post(
        "/graphql",
        content=b'{"query": "' + b" " * 20_000 + b'{ projections { name } }"}',
        headers={"content-type": "application/json"},
    )
    assert huge.status_code == 413

    strict = {"accept": "application/graphql-response+json"}
    deep = "{ orders { edges { node { shippingAddress { city } } } } }"
    refused = await server.http.post("/graphql", json={"query": deep}, headers=strict)
    assert refused.status_code == 400
    assert refused.headers["content-type"].startswith("application/graphql-response+json")
    assert "exceeds maximum operation depth" in refused.json()["errors"][0]["message"]
    shallow = "{ orders { edges { node { id } } } }"
    assert (await server.http.post("/graphql", json={"query": shallow})).status_code == 200

    aliases = "{ " + " ".join(f"a{n}: projections {{ name }}" for n in range(4)) + " }"
    too_many = await server.http.post("/graphql", json={"query": aliases}, headers=strict)
    assert too_many.status_code == 400
    assert "aliases" in too_many.json()["errors"][0]["message"]
    tokens = "{ " + "projections { name } " * 60 + "}"
    too_long = await server.http.post("/graphql", json={"query": tokens}, headers=strict)
    assert too_long.status_code == 400
    assert "token" in too_long.json()["errors"][0]["message"].lower()

    syntax = await server.http.post(
        "/graphql",
        json={"query": "{ order(id: "},
        headers={"accept": "application/graphql-response+json"},
    )
    assert syntax.status_code == 400
    legacy = await server.http.post("/graphql", json={"query": "{ nope }"})
    assert legacy.status_code == 200
    assert legacy.json()["errors"]


async def test_graphiql_is_served_to_a_browser(server: Server) -> None:
    page = await server.http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


def test_schema_file_equals_the_served_schema() -> None:
    assert (ROOT / "schema.graphql").read_text() == export_sdl(), (
        "schema.graphql is stale: run `ordergraph export-schema > schema.graphql`"
    )


async def place_then_await_caught_up(
    http: httpx.AsyncClient, ws: GraphQLWebSocket
) -> dict[str, Any]:
    """Place an order through ``http``; wait for its caughtUp on ``ws`` (maybe elsewhere)."""
    response = await http.post(
        "/graphql", json={"query": PLACE, "variables": {"input": place_input()}}
    )
    accepted: dict[str, Any] = response.json()["data"]["placeOrder"]
    caught_up = await ws.subscribe(
        "subscription($p: Position!) { caughtUp(position: $p) { position } }",
        {"p": accepted["position"]},
    )
    assert [e async for e in caught_up] == [{"caughtUp": {"position": accepted["position"]}}]
    return accepted


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_write_on_one_server_is_announced_on_another(
    engine: AsyncEngine, database_url: str
) -> None:
    command = [sys.executable, "-m", "graph.runtime.cli", "serve", "--port", "{port}"]
    env = {**os.environ, "DATABASE_URL": database_url, "POLL_INTERVAL": "0.2", "AUTH": "none"}
    async with (
        serve_process(command, env) as writer_url,
        serve_process(command, {**env, "RUN_PROJECTOR": "false"}) as reader_url,
        graphql_ws(reader_url + "/graphql") as ws,
        httpx.AsyncClient(base_url=writer_url, timeout=10) as http,
    ):
        updates = await ws.subscribe(
            'subscription { projectionUpdated(projections: ["order_views"]) '
            "{ projection position } }"
        )
        accepted = await place_then_await_caught_up(http, ws)
        update = await anext(updates)
        assert update["projectionUpdated"]["projection"] == "order_views"
        assert update["projectionUpdated"]["position"] >= accepted["position"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_unmigrated_postgres_database_is_refused_at_start_up(
    engine: AsyncEngine, database_url: str
) -> None:
    async with engine.begin() as conn:
        head = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
    try:
        app = create_app(Settings(database_url=database_url, auth="none"))
        with pytest.raises(SchemaOutOfDate, match="ordergraph migrate"):
            async with app.router.lifespan_context(app):
                pass
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text("UPDATE alembic_version SET version_num = :head"), {"head": head}
            )


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_projector_process_serves_api_replicas_without_polling(
    engine: AsyncEngine, database_url: str
) -> None:
    # The projector polls only every minute: a prompt caughtUp proves the API replica's
    # append was announced to it through PostgreSQL (the projections async, not inline).
    env = {**os.environ, "DATABASE_URL": database_url, "POLL_INTERVAL": "60", "AUTH": "none"}
    env["INLINE_PROJECTIONS"] = "none"
    projector = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.runtime.cli",
        "project",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(20):  # it is up once its checkpoints exist
            while not await _checkpoint_rows(engine):
                assert projector.returncode is None, "the projector exited"
                await asyncio.sleep(0.05)
        command = [sys.executable, "-m", "graph.runtime.cli", "serve", "--port", "{port}"]
        async with (
            serve_process(command, {**env, "RUN_PROJECTOR": "false"}) as api_url,
            httpx.AsyncClient(base_url=api_url, timeout=10) as http,
            graphql_ws(api_url + "/graphql") as ws,
        ):
            async with asyncio.timeout(5):
                await place_then_await_caught_up(http, ws)
    finally:
        projector.terminate()
        await projector.wait()


async def _checkpoint_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT count(*) FROM projection_checkpoints")) or 0)
