"""Builders of realistic commands for tests."""

from __future__ import annotations

import uuid
from decimal import Decimal

from domain.commands import PlaceOrder
from domain.eventstore.store import NewEvent
from domain.values import Address, OrderLine

ADDRESS = Address(line1="1 Main St", city="Springfield", postal_code="12345", country="US")


def new_order_id() -> str:
    return str(uuid.uuid4())


def place_order(
    order_id: str | None = None,
    customer_id: str = "customer-1",
    lines: tuple[OrderLine, ...] = (
        OrderLine("SKU-1", 2, Decimal("19.99")),
        OrderLine("SKU-2", 1, Decimal("0.10")),
    ),
    **kwargs: object,
) -> PlaceOrder:
    return PlaceOrder(
        order_id=order_id or new_order_id(),
        customer_id=customer_id,
        lines=lines,
        shipping_address=ADDRESS,
        **kwargs,  # type: ignore[arg-type]
    )


def new_event(n: int = 0, event_type: str = "Something") -> NewEvent:
    return NewEvent(event_type, 1, {"n": n, "amount": "1.10"}, {"command_id": f"c{n}"})
