"""Everything the edge accepts, every table holds and every projection applies, on both
databases; everything outside the bounds of domain/limits.py is refused and changes nothing."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import CommandBus
from domain.commands import PayOrder, ShipOrder
from domain.errors import RuleViolated
from domain.limits import (
    MAX_LINE_TOTAL,
    MAX_ORDER_TOTAL,
    MAX_QUANTITY,
    MAX_TEXT,
    MAX_UNIT_PRICE,
    SUM_PRECISION,
)
from domain.order import Order
from domain.values import Address, OrderLine
from readmodels.tables import customer_summaries, daily_sales, order_views
from tests.support.factories import ADDRESS, place_order
from tests.support.graphql import Server, mutation, place_input, running


@pytest.fixture
async def server(engine: AsyncEngine, database_url: str) -> AsyncIterator[Server]:
    async with running(engine, database_url) as server:
        yield server


NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
BAD_TEXT = ["a\x00b", "a\ud800b", "a\x07b", "line\nbreak", "a\x85b", "x" * (MAX_TEXT + 1)]


async def _gql(server: Server, name: str, input_type: str, **input: Any) -> dict[str, Any]:
    """Sent as ASCII JSON, the only way to send a lone surrogate (as a \\ud800 escape)."""
    body = json.dumps({"query": mutation(name, input_type), "variables": {"input": input}})
    response = await server.http.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["data"][name]
    return result


async def _read(server: Server, order_id: str, at: int) -> dict[str, Any]:
    body = await server.gql(
        "query($id: ID!, $at: Position) { order(id: $id, atLeast: $at) { status total }"
        ' customer(id: "customer-42", atLeast: $at) { totalPaid ordersPlaced }'
        " projections(atLeast: $at) { name state error } }",
        {"id": order_id, "at": at},
    )
    assert "stale" not in body.get("extensions", {}), body
    data: dict[str, Any] = body["data"]
    return data


async def test_the_largest_accepted_order_is_stored_and_projected(server: Server) -> None:
    quantity = int(MAX_ORDER_TOTAL / MAX_UNIT_PRICE)
    top = {"sku": "é" * MAX_TEXT, "quantity": quantity, "unitPrice": str(MAX_UNIT_PRICE)}
    accepted = await server.place(items=[top])
    assert accepted["__typename"] == "CommandAccepted", accepted
    order_id = accepted["orderId"]
    paid = await server.send(
        "payOrder", "PayOrderInput", orderId=order_id, amount=str(MAX_ORDER_TOTAL)
    )
    assert paid["__typename"] == "CommandAccepted", paid
    # Longer than the columns held before (100): the edge allows MAX_TEXT.
    shipped = await server.send(
        "shipOrder",
        "ShipOrderInput",
        orderId=order_id,
        carrier="C" * MAX_TEXT,
        trackingNumber="ü" * MAX_TEXT,
    )
    assert shipped["__typename"] == "CommandAccepted", shipped

    data = await _read(server, order_id, shipped["position"])

    assert data["order"]["status"] == "SHIPPED"
    assert data["order"]["total"] == str(MAX_ORDER_TOTAL)
    assert data["customer"] == {"totalPaid": str(MAX_ORDER_TOTAL), "ordersPlaced": 1}
    assert {p["state"] for p in data["projections"]} == {"live"}


@pytest.mark.parametrize(
    ("items", "field"),
    [
        # The finding: accepted before, then order_views overflowed on PostgreSQL.
        ([{"sku": "A", "quantity": 2, "unitPrice": "999999999999.99"}], "items[0].unitPrice"),
        ([{"sku": "A", "quantity": 1, "unitPrice": "1e1000000"}], "items[0].unitPrice"),
        ([{"sku": "A", "quantity": 1, "unitPrice": "-1e1000000"}], "items[0].unitPrice"),
        ([{"sku": "A", "quantity": 1, "unitPrice": "1e-1000000"}], "items[0].unitPrice"),
        ([{"sku": "A", "quantity": 1, "unitPrice": "NaN"}], "items[0].unitPrice"),
        (
            [{"sku": "A", "quantity": 1, "unitPrice": str(MAX_UNIT_PRICE + Decimal("0.01"))}],
            "items[0].unitPrice",
        ),
    ],
)
async def test_out_of_range_prices_are_invalid_input(
    server: Server, items: list[dict[str, Any]], field: str
) -> None:
    refused = await server.place(items=items)

    assert (refused["__typename"], refused["field"]) == ("InvalidInput", field), refused
    assert await server.store.head_position() == 0


@pytest.mark.parametrize("amount", ["1e1000000", "10000000.01", "Infinity"])
async def test_out_of_range_payments_are_invalid_input(server: Server, amount: str) -> None:
    accepted = await server.place()
    head = await server.store.head_position()

    refused = await server.send(
        "payOrder", "PayOrderInput", orderId=accepted["orderId"], amount=amount
    )

    assert (refused["__typename"], refused["field"]) == ("InvalidInput", "amount"), refused
    assert await server.store.head_position() == head


@pytest.mark.parametrize("bad", BAD_TEXT)
async def test_text_storage_cannot_hold_is_invalid_input(server: Server, bad: str) -> None:
    item = {"sku": bad, "quantity": 1, "unitPrice": "1.00"}
    address = {"line1": "1 Main St", "city": bad, "postalCode": "1", "country": "US"}

    refused_sku = await _gql(server, "placeOrder", "PlaceOrderInput", **place_input(items=[item]))
    refused_city = await _gql(
        server, "placeOrder", "PlaceOrderInput", **place_input(shippingAddress=address)
    )
    accepted = await server.place()
    head = await server.store.head_position()
    refused_carrier = await _gql(
        server,
        "shipOrder",
        "ShipOrderInput",
        orderId=accepted["orderId"],
        carrier=bad,
        trackingNumber="T1",
    )
    refused_reason = await _gql(
        server, "cancelOrder", "CancelOrderInput", orderId=accepted["orderId"], reason=bad
    )

    assert [(r["__typename"], r["field"]) for r in (refused_sku, refused_city)] == [
        ("InvalidInput", "items[0].sku"),
        ("InvalidInput", "shippingAddress.city"),
    ]
    assert [(r["__typename"], r["field"]) for r in (refused_carrier, refused_reason)] == [
        ("InvalidInput", "carrier"),
        ("InvalidInput", "reason"),
    ]
    assert await server.store.head_position() == head


def _rule(call: Any) -> str:
    with pytest.raises(RuleViolated) as refused:
        call()
    return refused.value.rule


def test_the_aggregate_enforces_the_bounds_whoever_sends_the_command() -> None:
    def place(*lines: OrderLine, address: Address = ADDRESS, customer: str = "c") -> None:
        Order("o").place(customer, lines, address, NOW)

    units = int(MAX_LINE_TOTAL / MAX_UNIT_PRICE)  # the largest line total at the top price
    top = OrderLine("A", units, MAX_UNIT_PRICE)
    assert _rule(lambda: place(top, OrderLine("B", 1, Decimal("0.01")))) == "order_total_range"
    over = OrderLine("A", units + 1, MAX_UNIT_PRICE)
    assert units + 1 <= MAX_QUANTITY
    assert _rule(lambda: place(over)) == "line_total_range"
    assert _rule(lambda: place(OrderLine("A", 1, Decimal("1e1000000")))) == "unit_price_range"
    assert _rule(lambda: place(OrderLine("A", 1, Decimal("0.001")))) == "unit_price_range"
    assert _rule(lambda: place(OrderLine("A\x00", 1, Decimal(1)))) == "text_bounds"
    bad_address = Address(line1="x", city="\ud800", postal_code="1", country="US")
    assert _rule(lambda: place(OrderLine("A", 1, Decimal(1)), address=bad_address)) == (
        "text_bounds"
    )
    assert _rule(lambda: place(OrderLine("A", 1, Decimal(1)), customer="c" * 101)) == "id_format"

    order = Order("o")
    order.place("c", (OrderLine("A", 1, Decimal(1)),), ADDRESS, NOW)
    assert _rule(lambda: order.pay(Decimal("1e1000000"), NOW)) == "payment_equals_total"
    order.pay(Decimal(1), NOW)
    assert _rule(lambda: order.ship("x" * (MAX_TEXT + 1), "T", NOW)) == "text_bounds"
    assert _rule(lambda: order.cancel("\x00", NOW)) == "text_bounds"


async def test_commands_sent_past_the_edge_are_refused_by_the_aggregate(
    bus: CommandBus, engine: AsyncEngine
) -> None:
    placed = await bus.dispatch(place_order(lines=(OrderLine("A", 1, Decimal(1)),)))

    with pytest.raises(RuleViolated):
        await bus.dispatch(ShipOrder(order_id=placed.order_id, carrier="\x00", tracking_number="T"))
    with pytest.raises(RuleViolated):
        await bus.dispatch(PayOrder(order_id=placed.order_id, amount=Decimal("-1e1000000")))


async def test_read_model_columns_hold_the_largest_values_the_bounds_allow(
    engine: AsyncEngine,
) -> None:
    # A customer's or a day's sums over as many orders as positions can number.
    orders = 2**63 - 1
    largest_sum = MAX_ORDER_TOTAL * orders
    assert largest_sum.adjusted() < SUM_PRECISION - 2
    summary = {
        "customer_id": "c" * 100,
        "orders_placed": orders,
        "open_orders": orders,
        "cancelled_orders": orders,
        "total_paid": largest_sum,
        "last_order_at": NOW,
        "last_order_position": orders,
    }
    day = {
        "day": date(2026, 11, 1),
        "orders_placed": orders,
        "orders_cancelled": orders,
        "revenue": largest_sum,
        "items_sold": orders,
    }
    view = {
        "order_id": "o" * 100,
        "customer_id": "c" * 100,
        "status": "SHIPPED",
        "lines": [],
        "total": MAX_ORDER_TOTAL,
        "shipping_address": {},
        "placed_at": NOW,
        "carrier": "é" * MAX_TEXT,
        "tracking_number": "ü" * MAX_TEXT,
        "version": 2**31 - 1,
        "placed_position": orders,
        "last_position": orders,
    }
    async with engine.begin() as conn:
        await conn.execute(sa.insert(customer_summaries), summary)
        await conn.execute(sa.insert(daily_sales), day)
        await conn.execute(sa.insert(order_views), view)
    async with engine.connect() as conn:
        stored_summary = (await conn.execute(sa.select(customer_summaries))).one()._asdict()
        stored_day = (await conn.execute(sa.select(daily_sales))).one()._asdict()
        stored_view = (await conn.execute(sa.select(order_views))).one()._asdict()

    assert stored_summary == summary
    assert stored_day == day
    assert {k: stored_view[k] for k in view} == view


@pytest.mark.parametrize(
    "forged", ["p:99999999999999999999", "p:9223372036854775808", "p:-1", "p:"]
)
async def test_a_forged_cursor_is_a_clear_error(server: Server, forged: str) -> None:
    cursor = base64.urlsafe_b64encode(forged.encode()).decode()
    for field in ("orders", "customers"):
        response = await server.http.post(
            "/graphql",
            json={
                "query": f"query($c: String) {{ {field}(after: $c) {{ totalCount }} }}",
                "variables": {"c": cursor},
            },
        )
        (error,) = response.json()["errors"]
        assert error["message"].startswith("not a cursor from this API"), error


async def test_ids_no_order_can_have_are_simply_not_found(server: Server) -> None:
    response = await server.http.post(
        "/graphql",
        content=json.dumps(
            {
                "query": "query($id: ID!) { order(id: $id) { id } customer(id: $id) { customerId }"
                " orders(customerId: $id) { totalCount } }",
                "variables": {"id": "a\x00\ud800" + "x" * 300},
            }
        ),
        headers={"content-type": "application/json"},
    )

    assert response.json() == {
        "data": {"order": None, "customer": None, "orders": {"totalCount": 0}}
    }


async def test_a_day_that_sold_more_items_than_a_graphql_int_holds_is_answered(
    engine: AsyncEngine, server: Server
) -> None:
    # About 30,000 orders of the largest accepted size (100 lines of 1,000) in one day.
    items = 3_000_000_000
    day = {
        "day": date(2026, 11, 1),
        "orders_placed": 30_000,
        "orders_cancelled": 0,
        "revenue": Decimal("0.00"),
        "items_sold": items,
    }
    async with engine.begin() as conn:
        await conn.execute(sa.insert(daily_sales), day)
    body = await server.gql(
        'query { dailySales(from: "2026-11-01", to: "2026-11-01") { date itemsSold } }'
    )
    assert body["data"]["dailySales"] == [{"date": "2026-11-01", "itemsSold": items}]
