"""Who may do what, end to end over real HTTP and WebSocket with AUTH=jwt, on both databases:
customers see and change only their own orders (another's is simply not there), staff run
the desk, the payments account only pays, and an anonymous caller only introspects."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.repository import stream_id
from tests.support.access_harness import Desk, codes, desk
from tests.support.graphql import place_input
from tests.support.serving import GraphQLWebSocketError, graphql_ws

ADDRESS = {"line1": "9 Side St", "city": "Shelbyville", "postalCode": "54321", "country": "US"}
ORDER = "query($id: ID!, $at: Position) { order(id: $id, atLeast: $at) { id customerId status } }"


def nothing_in(body: dict[str, Any]) -> bool:
    """No data: null as a whole, or a null in the one field asked for."""
    data = body.get("data")
    return data is None or all(value is None for value in data.values())


@pytest.fixture
async def server(engine: AsyncEngine, database_url: str) -> AsyncIterator[Desk]:
    async with desk(engine, database_url) as server:
        yield server


@pytest.fixture
def alice(server: Desk) -> str:
    return server.token("alice", "customer", customer="alice")


@pytest.fixture
def bob(server: Desk) -> str:
    return server.token("bob", "customer", customer="bob")


@pytest.fixture
def staff(server: Desk) -> str:
    return server.token("sam", "staff")


@pytest.fixture
def payments(server: Desk) -> str:
    return server.token("payment-service", "payments")


async def test_a_customer_places_reads_changes_and_cancels_their_own_order(
    server: Desk, alice: str
) -> None:
    placed = await server.place(alice, customerId="alice")
    assert placed["__typename"] == "CommandAccepted"
    order_id = placed["orderId"]

    moved = await server.send(
        alice, "changeShippingAddress", orderId=order_id, shippingAddress=ADDRESS
    )
    assert moved["__typename"] == "CommandAccepted"
    cancelled = await server.send(alice, "cancelOrder", orderId=order_id, reason="changed mind")
    assert cancelled["__typename"] == "CommandAccepted"

    data = await server.data(
        "query($id: ID!, $at: Position) { order(id: $id, atLeast: $at) { status } "
        "orders(atLeast: $at) { totalCount edges { node { id } } } "
        'customer(id: "alice", atLeast: $at) { ordersPlaced cancelledOrders } }',
        {"id": order_id, "at": cancelled["position"]},
        token=alice,
    )
    assert data["order"] == {"status": "CANCELLED"}
    assert data["orders"]["edges"] == [{"node": {"id": order_id}}]
    assert data["customer"] == {"ordersPlaced": 1, "cancelledOrders": 1}


async def test_a_customer_cannot_read_change_cancel_or_detect_another_customers_order(
    server: Desk, alice: str, bob: str
) -> None:
    bobs = await server.place(bob, customerId="bob")
    bobs_id, at = bobs["orderId"], bobs["position"]
    missing_id = str(uuid.uuid4())

    data = await server.data(
        "query($id: ID!, $at: Position) { order(id: $id, atLeast: $at) { id } "
        'mine: orders(atLeast: $at) { totalCount } bobs: orders(customerId: "bob") { totalCount } '
        'customer(id: "bob") { ordersPlaced } }',
        {"id": bobs_id, "at": at},
        token=alice,
    )
    assert data == {
        "order": None,
        "mine": {"totalCount": 0},
        "bobs": {"totalCount": 0},
        "customer": None,
    }

    # Changing or cancelling it answers exactly as for an order that does not exist, even
    # with a version guard (a VersionConflict would reveal the version).
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("changeShippingAddress", {"shippingAddress": ADDRESS}),
        ("cancelOrder", {"reason": "mine now"}),
        ("cancelOrder", {"reason": "mine now", "expectedVersion": 7}),
    ]
    for name, extra in attempts:
        theirs = await server.send(alice, name, orderId=bobs_id, **extra)
        nothing = await server.send(alice, name, orderId=missing_id, **extra)
        assert theirs["__typename"] == nothing["__typename"] == "OrderNotFound"
        assert theirs["message"].replace(bobs_id, "ID") == nothing["message"].replace(
            missing_id, "ID"
        )

    # Placing under bob's id, or in bob's name, is refused without saying whether it exists.
    chosen = await server.place(alice, customerId="alice", orderId=bobs_id)
    assert chosen["__typename"] == "InvalidInput"
    assert chosen["field"] == "orderId"
    other_name = await server.place(alice, customerId="bob")
    assert other_name["__typename"] == "InvalidInput"
    assert other_name["field"] == "customerId"

    # Bob's order is untouched: still placed, at version 1.
    view = await server.data(ORDER, {"id": bobs_id, "at": at}, token=bob)
    assert view["order"] == {"id": bobs_id, "customerId": "bob", "status": "PLACED"}
    assert [e.stream_version for e in await server.store.read_stream(stream_id(bobs_id))] == [1]


async def test_a_command_id_is_private_to_its_subject(server: Desk, alice: str, bob: str) -> None:
    command_id = str(uuid.uuid4())
    bobs = await server.place(bob, customerId="bob", commandId=command_id)
    again = await server.place(bob, customerId="bob", commandId=command_id)
    assert again == bobs  # idempotent for bob
    fresh_token = server.forged(sub="bob", roles=["customer"], customer_id="bob", exp=2**31)
    assert await server.place(fresh_token, customerId="bob", commandId=command_id) == bobs

    alices = await server.place(alice, customerId="alice", commandId=command_id)
    # Alice's command with the same id is her own new order, not bob's result.
    assert alices["__typename"] == "CommandAccepted"
    assert alices["orderId"] != bobs["orderId"]
    assert alices["position"] > bobs["position"]


async def test_a_customer_cannot_subscribe_to_another_customers_order(
    server: Desk, alice: str, bob: str, staff: str
) -> None:
    bobs = await server.place(bob, customerId="bob")
    alices = await server.place(alice, customerId="alice")
    subscription = "subscription($id: ID!) { orderChanged(id: $id) { id status } }"
    async with (
        graphql_ws(server.url + "/graphql", payload={"Authorization": f"Bearer {alice}"}) as ws,
        graphql_ws(server.url + "/graphql", payload={"token": staff}) as desk_ws,
    ):
        spying = await ws.subscribe(subscription, {"id": bobs["orderId"]})
        watching = await desk_ws.subscribe(subscription, {"id": bobs["orderId"]})
        own = await ws.subscribe(subscription, {"id": alices["orderId"]})
        assert await anext(watching) == {
            "orderChanged": {"id": bobs["orderId"], "status": "PLACED"}
        }
        assert (await anext(own))["orderChanged"]["status"] == "PLACED"

        paid = await server.send(staff, "payOrder", orderId=bobs["orderId"], amount="40.28")
        assert paid["__typename"] == "CommandAccepted"
        assert (await anext(watching))["orderChanged"]["status"] == "PAID"
        await server.send(alice, "cancelOrder", orderId=alices["orderId"], reason="r")
        assert (await anext(own))["orderChanged"]["status"] == "CANCELLED"

        # Both of bob's changes (placed, paid) reached the staff subscription before alice's
        # own change reached hers; her subscription to bob's order got nothing at all.
        assert spying.queue.empty()


async def test_staff_run_the_desk(server: Desk, alice: str, staff: str) -> None:
    placed = await server.place(alice, customerId="alice")
    order_id = placed["orderId"]
    paid = await server.send(staff, "payOrder", orderId=order_id, amount="40.28")
    shipped = await server.send(
        staff, "shipOrder", orderId=order_id, carrier="UPS", trackingNumber="1Z"
    )
    assert paid["__typename"] == shipped["__typename"] == "CommandAccepted"
    for_bob = await server.place(staff, customerId="bob", orderId=str(uuid.uuid4()))
    assert for_bob["__typename"] == "CommandAccepted"

    data = await server.data(
        "query($id: ID!, $at: Position) { order(id: $id, atLeast: $at) { status "
        "history { version eventType subject roles commandId } } "
        "orders(atLeast: $at) { totalCount } customers(atLeast: $at) { totalCount } "
        'dailySales(from: "2020-01-01", to: "2020-01-02") { ordersPlaced } '
        "projections { name error } }",
        {"id": order_id, "at": for_bob["position"]},
        token=staff,
    )
    assert data["order"]["status"] == "SHIPPED"
    assert [(h["eventType"], h["subject"], h["roles"]) for h in data["order"]["history"]] == [
        ("OrderPlaced", "alice", ["customer"]),
        ("OrderPaid", "sam", ["staff"]),
        ("OrderShipped", "sam", ["staff"]),
    ]
    assert data["order"]["history"][1]["commandId"] == paid["commandId"]
    assert data["orders"]["totalCount"] == 2
    assert data["customers"]["totalCount"] == 2
    assert len(data["dailySales"]) == 2
    assert {p["name"] for p in data["projections"]} == {
        "order_views",
        "customer_summaries",
        "daily_sales",
    }


async def test_customers_see_neither_the_desk_nor_the_history(server: Desk, alice: str) -> None:
    placed = await server.place(alice, customerId="alice")
    for field in (
        "customers { totalCount }",
        'dailySales(from: "2020-01-01", to: "2020-01-01") { ordersPlaced }',
    ):
        body = await server.gql(f"{{ {field} }}", token=alice)
        assert nothing_in(body)
        assert codes(body) == ["FORBIDDEN"]
    body = await server.gql(
        "query($id: ID!, $at: Position) { order(id: $id, atLeast: $at) { status "
        "history { subject } } }",
        {"id": placed["orderId"], "at": placed["position"]},
        token=alice,
    )
    assert body["data"]["order"] == {"status": "PLACED", "history": None}
    assert codes(body) == ["FORBIDDEN"]
    # Progress is theirs to see (read-your-writes), a failure's details are not.
    data = await server.data("{ projections { name position error } }", token=alice)
    assert all(p["error"] is None for p in data["projections"])


async def test_the_payments_account_only_pays(server: Desk, alice: str, payments: str) -> None:
    placed = await server.place(alice, customerId="alice")
    paid = await server.send(payments, "payOrder", orderId=placed["orderId"], amount="40.28")
    assert paid["__typename"] == "CommandAccepted"

    from tests.support.graphql import PLACE, mutation

    refused = [
        (PLACE, {"input": place_input(customerId="alice")}),
        (
            mutation("shipOrder", "ShipOrderInput"),
            {"input": {"orderId": placed["orderId"], "carrier": "UPS", "trackingNumber": "1"}},
        ),
        (
            mutation("cancelOrder", "CancelOrderInput"),
            {"input": {"orderId": placed["orderId"], "reason": "r"}},
        ),
        (ORDER, {"id": placed["orderId"]}),
        ("{ orders { totalCount } }", None),
        ("{ customers { totalCount } }", None),
        ("{ projections { name } }", None),
    ]
    for query, variables in refused:
        body = await server.gql(query, variables, token=payments)
        assert codes(body) == ["FORBIDDEN"], query
        assert nothing_in(body)


async def test_an_anonymous_caller_only_introspects(server: Desk, alice: str) -> None:
    placed = await server.place(alice, customerId="alice")
    schema = await server.data("{ __schema { queryType { name } } }", token=None)
    assert schema == {"__schema": {"queryType": {"name": "Query"}}}

    for query, variables in [
        (ORDER, {"id": placed["orderId"]}),
        ("{ orders { totalCount } }", None),
        ("{ projections { name } }", None),
    ]:
        body = await server.gql(query, variables, token=None)
        assert codes(body) == ["UNAUTHENTICATED"]
        assert nothing_in(body)
    from tests.support.graphql import PLACE

    body = await server.gql(PLACE, {"input": place_input()}, token=None)
    assert codes(body) == ["UNAUTHENTICATED"]
    assert await server.store.head_position() == placed["position"]

    page = await server.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()


async def test_events_record_who_caused_them(server: Desk, alice: str, staff: str) -> None:
    placed = await server.place(alice, customerId="alice")
    await server.send(staff, "payOrder", orderId=placed["orderId"], amount="40.28")

    events = await server.store.read_stream(stream_id(placed["orderId"]))
    assert [e.metadata["actor"] for e in events] == [
        {"subject": "alice", "roles": ["customer"], "customer_id": "alice"},
        {"subject": "sam", "roles": ["staff"]},
    ]
    assert events[0].metadata["command_id"] == placed["commandId"]


async def test_subscriptions_are_guarded_like_queries(server: Desk, payments: str) -> None:
    async with graphql_ws(server.url + "/graphql", payload={"token": payments}) as ws:
        for query in (
            'subscription { orderChanged(id: "any") { id } }',
            "subscription { caughtUp(position: 0) { position } }",
            "subscription { projectionUpdated { position } }",
        ):
            refused = await ws.subscribe(query)
            with pytest.raises(GraphQLWebSocketError, match="FORBIDDEN"):
                await anext(refused)
