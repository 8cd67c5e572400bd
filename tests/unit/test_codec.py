"""Exact serialization and upcasting of events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from domain import events
from domain.eventstore import codec
from domain.values import Address, OrderLine
from tests.support.factories import ADDRESS


def test_money_and_time_round_trip_without_loss() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    placed = events.OrderPlaced(
        order_id="o-1",
        occurred_at=at,
        customer_id="c-1",
        lines=(OrderLine("A", 3, Decimal("0.10")), OrderLine("B", 1, Decimal("1e-2"))),
        shipping_address=ADDRESS,
        total=Decimal("0.31"),
    )

    event_type, version, data = codec.encode(placed)
    stored = json.loads(json.dumps(data))  # what a JSON column gives back
    decoded = codec.decode(event_type, version, stored)

    assert decoded == placed
    assert decoded.occurred_at.tzinfo is UTC
    assert "float" not in {type(v).__name__ for v in data.values()}
    assert data["total"] == "0.31"


def test_an_order_placed_v1_with_a_free_text_address_is_upcast() -> None:
    v1 = {
        "order_id": "o-1",
        "occurred_at": "2024-03-01T10:00:00+00:00",
        "customer_id": "c-1",
        "lines": [{"sku": "A", "quantity": 1, "unit_price": "5.00"}],
        "shipping_address": "221B Baker Street, Flat 2, London, NW1 6XE, GB",
        "total": "5.00",
    }

    placed = codec.decode("OrderPlaced", 1, v1)

    assert isinstance(placed, events.OrderPlaced)
    assert placed.shipping_address == Address(
        line1="221B Baker Street",
        line2="Flat 2",
        city="London",
        postal_code="NW1 6XE",
        country="GB",
    )


def test_an_unsplittable_v1_address_keeps_its_text() -> None:
    data = codec.upcast_order_placed_v1({"shipping_address": "somewhere, far"})
    assert data["shipping_address"]["line1"] == "somewhere, far"
