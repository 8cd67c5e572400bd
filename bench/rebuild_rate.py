"""Rebuild rate: fill a fresh database with N events of realistic orders, then rebuild every
projection and report events per second.

    python -m bench.rebuild_rate [--database-url URL] [--orders 25000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from domain import codec, events
from domain.db import create_engine
from domain.handlers import stream_id
from domain.store import EventStore, NewEvent, StreamState
from domain.values import Address, OrderLine
from migrations import upgrade_to_head
from readmodels.notifier import InProcessNotifier
from readmodels.rebuild import rebuild
from readmodels.registry import all_projections

ADDRESS = Address(line1="1 Main St", city="Springfield", postal_code="12345", country="US")


def _order_events(n: int) -> list[events.Event]:
    """Four events per order: placed, address changed, paid, then shipped or cancelled."""
    at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=37 * n)
    oid = f"order-{n}"
    lines = (OrderLine("SKU-1", 2, Decimal("19.99")), OrderLine("SKU-2", 1, Decimal("5.00")))
    return [
        events.OrderPlaced(oid, at, f"customer-{n % 500}", lines, ADDRESS, Decimal("44.98")),
        events.ShippingAddressChanged(oid, at, ADDRESS),
        events.OrderPaid(oid, at + timedelta(hours=1), Decimal("44.98")),
        events.OrderShipped(oid, at + timedelta(hours=2), "UPS", f"1Z{n}")
        if n % 4
        else events.OrderCancelled(oid, at + timedelta(hours=2), "changed mind"),
    ]


async def fill(store: EventStore, orders: int) -> None:
    for n in range(orders):
        new = [NewEvent(*codec.encode(e), {}) for e in _order_events(n)]
        await store.append(stream_id(f"order-{n}"), new, StreamState.NO_STREAM)


async def run(url: str, orders: int) -> None:
    engine = create_engine(url, sqlite_synchronous="NORMAL")
    try:
        await upgrade_to_head(engine)
        store = EventStore(engine)
        if await store.head_position() == 0:
            await fill(store, orders)
        total = 0
        started = time.perf_counter()
        for projection in all_projections():
            one = time.perf_counter()
            replayed = await rebuild(engine, projection, InProcessNotifier(), batch_size=5000)
            rate = replayed / (time.perf_counter() - one)
            print(f"{engine.dialect.name:10} {projection.name:20} {replayed} events {rate:8.0f}/s")
            total += replayed
        elapsed = time.perf_counter() - started
        print(f"{engine.dialect.name:10} {'all':20} {total} events {total / elapsed:8.0f}/s")
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url")
    parser.add_argument("--orders", type=int, default=25_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        asyncio.run(run(url, args.orders))


if __name__ == "__main__":
    main()
