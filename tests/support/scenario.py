"""A realistic mix of orders across customers and days, driven through the command bus, with
the read-model figures it should produce computed independently of the projections."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from domain import commands
from domain.bus import CommandBus, build_bus
from domain.eventstore.store import EventStore
from domain.handlers import HandlerContext
from domain.values import Address, OrderLine
from tests.support.factories import ADDRESS, new_order_id

START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Expected:
    orders: dict[str, dict[str, object]] = field(default_factory=dict)
    customers: dict[str, dict[str, object]] = field(default_factory=dict)
    days: dict[date, dict[str, object]] = field(default_factory=dict)
    head: int = 0


def clocked_bus(store: EventStore, clock: Clock) -> CommandBus:
    return build_bus(store, HandlerContext(store, clock))


async def run_scenario(store: EventStore, orders: int = 60, seed: int = 7) -> Expected:
    rng = random.Random(seed)
    clock = Clock()
    bus = clocked_bus(store, clock)
    expected = Expected()
    customers: dict[str, dict[str, object]] = defaultdict(
        lambda: {"placed": 0, "open": 0, "cancelled": 0, "paid": Decimal("0.00"), "last": None}
    )
    days: dict[date, dict[str, object]] = defaultdict(
        lambda: {"placed": 0, "cancelled": 0, "revenue": Decimal("0.00"), "items": 0}
    )
    for n in range(orders):
        clock.now = START + timedelta(hours=7 * n)  # spreads the orders over ~18 days
        customer = f"customer-{rng.randrange(8)}"
        lines = tuple(
            OrderLine(
                f"SKU-{rng.randrange(50)}", rng.randint(1, 5), Decimal(rng.randint(0, 9999)) / 100
            )
            for _ in range(rng.randint(1, 4))
        )
        total = sum((line.line_total for line in lines), Decimal("0.00"))
        order_id = new_order_id()
        result = await bus.dispatch(
            commands.PlaceOrder(
                order_id=order_id, customer_id=customer, lines=lines, shipping_address=ADDRESS
            )
        )
        c, d = customers[customer], days[clock.now.date()]
        c["placed"] += 1  # type: ignore[operator]
        c["open"] += 1  # type: ignore[operator]
        c["last"] = clock.now
        d["placed"] += 1  # type: ignore[operator]
        d["items"] += sum(line.quantity for line in lines)  # type: ignore[operator]
        status, version = "PLACED", 1
        if rng.random() < 0.3:
            clock.now += timedelta(minutes=5)
            await bus.dispatch(
                commands.ChangeShippingAddress(
                    order_id=order_id,
                    shipping_address=Address("9 New Rd", "Capital", "00001", "FR"),
                )
            )
            version += 1
        if rng.random() < 0.7:
            clock.now += timedelta(hours=3)
            result = await bus.dispatch(commands.PayOrder(order_id=order_id, amount=total))
            c["paid"] += total  # type: ignore[operator]
            days[clock.now.date()]["revenue"] += total  # type: ignore[operator]
            status, version = "PAID", version + 1
            if rng.random() < 0.5:
                clock.now += timedelta(hours=1)
                result = await bus.dispatch(
                    commands.ShipOrder(order_id=order_id, carrier="UPS", tracking_number=f"1Z{n}")
                )
                c["open"] -= 1  # type: ignore[operator]
                status, version = "SHIPPED", version + 1
        if status != "SHIPPED" and rng.random() < 0.25:
            clock.now += timedelta(hours=2)
            result = await bus.dispatch(commands.CancelOrder(order_id=order_id, reason="no"))
            c["open"] -= 1  # type: ignore[operator]
            c["cancelled"] += 1  # type: ignore[operator]
            days[clock.now.date()]["cancelled"] += 1  # type: ignore[operator]
            status, version = "CANCELLED", version + 1
        expected.orders[order_id] = {
            "customer_id": customer,
            "status": status,
            "total": total,
            "version": version,
        }
        expected.head = max(expected.head, result.position)
    expected.customers = dict(customers)
    expected.days = dict(days)
    return expected
