"""Builders of realistic commands for tests, and an insert that holds its batch open."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from domain.commands import PlaceOrder
from domain.eventstore.group_commit import insert_events
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


class HoldNextInsert:
    """The real insert, whose first call stops after inserting and before the commit."""

    def __init__(self) -> None:
        self.inside = asyncio.Event()
        self.release = asyncio.Event()
        self.hold_next = True

    async def __call__(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
        result = await insert_events(conn, rows)
        if self.hold_next:
            self.hold_next = False
            self.inside.set()
            await self.release.wait()
        return result
