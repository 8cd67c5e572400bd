"""In-process append rate: single-event PlaceOrder through the command bus.

    python -m bench.append_rate [--database-url URL] [--orders N] [--concurrency 16]

Runs N orders one after another, then N orders from ``--concurrency`` tasks, and prints
commands per second for each. Uses a fresh SQLite file by default.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from domain.bus import CommandBus, build_bus
from domain.commands import PlaceOrder, new_id
from domain.eventstore.store import EventStore
from domain.values import Address, OrderLine
from graph.runtime.composition import engine_for_url
from migrations import upgrade_to_head

ADDRESS = Address(line1="1 Main St", city="Springfield", postal_code="12345", country="US")
LINES = (OrderLine("SKU-1", 2, Decimal("19.99")),)


def _command() -> PlaceOrder:
    return PlaceOrder(order_id=new_id(), customer_id="c-1", lines=LINES, shipping_address=ADDRESS)


async def _sequential(bus: CommandBus, orders: int) -> float:
    started = time.perf_counter()
    for _ in range(orders):
        await bus.dispatch(_command())
    return orders / (time.perf_counter() - started)


async def _concurrent(bus: CommandBus, orders: int, concurrency: int) -> float:
    remaining = iter(range(orders))

    async def worker() -> None:
        for _ in remaining:
            await bus.dispatch(_command())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return orders / (time.perf_counter() - started)


async def run(url: str, orders: int, concurrency: int) -> None:
    engine = engine_for_url(url, pool_size=concurrency + 2)
    try:
        await upgrade_to_head(engine)
        bus = build_bus(EventStore(engine))
        await _sequential(bus, 50)  # warm-up: connections, statement caches
        sequential = await _sequential(bus, orders)
        concurrent = await _concurrent(bus, orders, concurrency)
    finally:
        await engine.dispose()
    print(
        f"{engine.dialect.name:10} sequential {sequential:8.0f}/s   "
        f"{concurrency} concurrent {concurrent:8.0f}/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(run(url, args.orders, args.concurrency))


if __name__ == "__main__":
    main()
