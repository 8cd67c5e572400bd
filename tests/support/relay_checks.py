"""What every relay test checks: the stream holds each committed event exactly once, each
order's events in their order, and every message fits the committed contract."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import jsonschema
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import CommandBus
from domain.commands import ChangeShippingAddress, PayOrder, ShipOrder
from domain.eventstore.store import EventStore
from domain.values import Address
from integration.jetstream import JetStreamPublisher
from integration.relay import Relay
from readmodels.notifications.inprocess import InProcessNotifier
from tests.support.factories import place_order
from tests.support.jetstream import Stored, StreamUnderTest

SCHEMA_FILE = Path(__file__).parents[2] / "integration" / "orders.v1.schema.json"
VALIDATOR = jsonschema.Draft202012Validator(
    json.loads(SCHEMA_FILE.read_text()), format_checker=jsonschema.FormatChecker()
)


async def order_life(bus: CommandBus, customer: str, events: int = 4) -> int:
    """Place an order and take it through up to ``events`` events; the last position."""
    placed = await bus.dispatch(place_order(customer_id=customer))
    last = placed.position
    steps = [
        ChangeShippingAddress(
            order_id=placed.order_id,
            shipping_address=Address("9 New Rd", "Capital", "00001", "FR"),
        ),
        PayOrder(order_id=placed.order_id, amount=Decimal("40.08")),
        ShipOrder(order_id=placed.order_id, carrier="UPS", tracking_number="1Z"),
    ]
    for command in steps[: events - 1]:
        last = (await bus.dispatch(command)).position
    return last


async def many_orders(bus: CommandBus, orders: int, events: int = 4) -> int:
    """``orders`` order lives at once (so a batch holds several events of one order)."""
    lasts = await asyncio.gather(*(order_life(bus, f"c-{n % 5}", events) for n in range(orders)))
    return max(lasts)


async def assert_exactly_once_in_order(store: EventStore, stored: list[Stored]) -> None:
    committed = await store.read_all(after=0, limit=100_000)
    expected_ids = [f"{e.stream_id}/{e.stream_version}" for e in committed]
    ids = [m.headers["Nats-Msg-Id"] for m in stored]
    assert len(ids) == len(set(ids)), "a message is in the stream twice"
    assert sorted(ids) == sorted(expected_ids), "the stream and the event log differ"
    versions: dict[str, list[int]] = defaultdict(list)
    for message in stored:
        VALIDATOR.validate(message.body)
        assert message.body["messageId"] == message.headers["Nats-Msg-Id"]
        assert str(message.body["orderVersion"]) == message.headers["Orders-Order-Version"]
        versions[message.body["orderId"]].append(message.body["orderVersion"])
    for order, seen in versions.items():
        assert seen == list(range(1, len(seen) + 1)), f"order {order} out of order: {seen}"


DEADLINE = 60.0


def make_relay(
    engine: AsyncEngine,
    stream: StreamUnderTest,
    notifier: InProcessNotifier | None = None,
    *,
    url: str | None = None,
    batch_size: int = 50,
) -> Relay:
    publisher = JetStreamPublisher(url or stream.url, stream.name, stream.prefix, ack_timeout=2)
    return Relay(
        engine,
        publisher,
        notifier or InProcessNotifier(),
        batch_size=batch_size,
        poll_interval=0.2,
        max_backoff=0.5,
    )


@contextlib.asynccontextmanager
async def relay_subprocess(
    database_url: str,
    stream: StreamUnderTest,
    *args: str,
    module: str = "tests.support.relay_process",
) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "NATS_URL": stream.url,
        "NATS_STREAM": stream.name,
        "NATS_SUBJECT_PREFIX": stream.prefix,
        "LOG_LEVEL": "warning",
        "POLL_INTERVAL": "0.2",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
