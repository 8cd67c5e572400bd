"""Projection rebuild rate: fill a fresh database with N events of realistic orders (those of
four events each: placed, address changed, paid, shipped or cancelled), then rebuild
every projection, as ``ordergraph rebuild --all`` does (a new version of each, built beside
the active one, then switched to), and time it.

    python -m bench.replay --database-url URL [--events 100000]

Prints one JSON object. The fill writes rows straight into the events table in large
transactions: appending 25,000 orders one command at a time would take minutes on an
fsync-bound disk and measures nothing the HTTP workloads do not already measure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from domain import events
from domain.eventstore import codec
from domain.eventstore.repository import stream_id
from domain.eventstore.tables import events as events_table
from domain.values import Address, OrderLine
from graph.runtime.composition import engine_for_url
from graph.runtime.gc_tuning import tune_gc
from migrations import upgrade_to_head
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.rebuild import rebuild
from readmodels.registry import all_projections

FILL_CHUNK = 4000  # rows per INSERT round trip
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


def _rows(order: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    rows = []
    for version, event in enumerate(_order_events(order), start=1):
        event_type, schema_version, data = codec.encode(event)
        rows.append(
            {
                "stream_id": stream_id(f"order-{order}"),
                "stream_version": version,
                "event_type": event_type,
                "schema_version": schema_version,
                "data": data,
                "meta": {},
                "recorded_at": now,
            }
        )
    return rows


async def fill(database_url: str, total_events: int) -> int:
    """Insert ``total_events`` (rounded up to whole orders of 4 events); return the head."""
    engine = engine_for_url(database_url, sqlite_synchronous="NORMAL")
    try:
        await upgrade_to_head(engine)
        orders = -(-total_events // 4)
        pending: list[dict[str, Any]] = []
        async with engine.begin() as conn:
            for order in range(orders):
                pending += _rows(order)
                if len(pending) >= FILL_CHUNK or order == orders - 1:
                    await conn.execute(sa.insert(events_table), pending)
                    pending = []
            head = int(await conn.scalar(sa.select(sa.func.max(events_table.c.position))) or 0)
    finally:
        await engine.dispose()
    return head


async def rebuild_all(database_url: str) -> dict[str, Any]:
    """Rebuild every projection (together, as `ordergraph rebuild --all` does)."""
    engine = engine_for_url(database_url)
    tune_gc()  # as `ordergraph rebuild` does
    try:
        started = time.perf_counter()
        done = await rebuild(engine, all_projections(), InProcessNotifier(), batch_size=5000)
        replayed = done.replayed
        seconds = time.perf_counter() - started
    finally:
        await engine.dispose()
    # The headline: events in the store over the time to rebuild all three projections.
    return {
        "events": replayed,
        "seconds": seconds,
        "rate": replayed / seconds,
    }


async def run(database_url: str, total_events: int) -> dict[str, Any]:
    started = time.perf_counter()
    head = await fill(database_url, total_events)
    fill_seconds = time.perf_counter() - started
    return {"head": head, "fill_seconds": fill_seconds, **await rebuild_all(database_url)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.database_url, args.events))))


if __name__ == "__main__":
    main()
