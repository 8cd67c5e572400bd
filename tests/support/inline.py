"""Driving the store with inline projections in tests: lifecycles, commands, checkpoints."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain import commands
from domain.bus import CommandBus
from domain.errors import DomainError
from domain.eventstore.store import EventStore
from domain.values import Address, OrderLine
from readmodels.inline import InlineProjections
from readmodels.notifications.messages import Notifier
from readmodels.projection import Projection
from readmodels.registry import all_projections
from readmodels.tables import checkpoints
from tests.support.factories import ADDRESS


def go_inline(
    store: EventStore,
    notifier: Notifier,
    names: Collection[str] | None = None,
    projections: Sequence[Projection] | None = None,
) -> InlineProjections:
    """From now on apply these projections (default: all) inline in ``store``'s appends."""
    chosen = [p for p in projections or all_projections() if names is None or p.name in names]
    inline = InlineProjections(chosen, notifier)
    store.in_each_batch(inline)
    return inline


async def checkpoint_positions(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(checkpoints.c.name, checkpoints.c.position))
        return {row.name: row.position for row in rows}


async def checkpoint_states(engine: AsyncEngine) -> dict[str, tuple[str, int | None]]:
    async with engine.connect() as conn:
        query = sa.select(checkpoints.c.name, checkpoints.c.state, checkpoints.c.error_position)
        return {row.name: (row.state, row.error_position) for row in await conn.execute(query)}


class Orders:
    """Commands against a handful of orders, refused ones included (and swallowed: a
    refusal writes nothing, which is part of what the read models must agree on)."""

    def __init__(self, bus: CommandBus) -> None:
        self.bus = bus
        self.totals: dict[str, Decimal] = {}
        self.accepted = 0
        self.refused = 0

    async def send(self, command: commands.Command) -> None:
        try:
            await self.bus.dispatch(command)
        except DomainError:
            self.refused += 1
        else:
            self.accepted += 1

    async def place(self, order_id: str, customer_id: str, quantity: int = 1) -> None:
        line = OrderLine(f"SKU-{quantity}", quantity, Decimal("2.50"))
        self.totals.setdefault(order_id, line.line_total)
        await self.send(
            commands.PlaceOrder(
                order_id=order_id,
                customer_id=customer_id,
                lines=(line,),
                shipping_address=ADDRESS,
            )
        )

    async def pay(self, order_id: str, exact: bool = True) -> None:
        total = self.totals.get(order_id, Decimal("1.00"))
        amount = total if exact else total + Decimal("0.01")
        await self.send(commands.PayOrder(order_id=order_id, amount=amount))

    async def ship(self, order_id: str) -> None:
        await self.send(commands.ShipOrder(order_id=order_id, carrier="DHL", tracking_number="T-1"))

    async def cancel(self, order_id: str) -> None:
        await self.send(commands.CancelOrder(order_id=order_id, reason="changed my mind"))

    async def readdress(self, order_id: str) -> None:
        moved = Address(line1="2 Side St", city="Shelbyville", postal_code="54321", country="US")
        await self.send(commands.ChangeShippingAddress(order_id=order_id, shipping_address=moved))
