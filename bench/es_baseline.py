"""In-process placing rate: the ``eventsourcing`` library (PyPI) beside ordergraph's own bus,
the same orders on the same database, sequentially and from N concurrent workers.

    python -m bench.es_baseline --database-url URL [--orders 1500] [--concurrency 16]

Prints one JSON object. Runs in its own process (``python -m bench`` starts it after the
servers have stopped) so the library's threads and environment stay out of the load generator.
The library's API is synchronous, so its concurrency is threads; ordergraph's is asyncio tasks,
exactly as ``bench/append_rate.py`` measures it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from sqlalchemy.engine import make_url

from bench.append_rate import _concurrent, _sequential
from bench.workloads import ADDRESS, ITEMS, TOTAL
from domain.bus import build_bus
from domain.eventstore.store import EventStore
from graph.runtime.composition import engine_for_url
from migrations import upgrade_to_head

WARM_UP = 50


class Order(Aggregate):
    @event("Placed")
    def __init__(
        self,
        customer_id: str,
        lines: list[dict[str, Any]],
        shipping_address: dict[str, Any],
        total: Decimal,
    ) -> None:
        self.customer_id = customer_id
        self.lines = lines
        self.shipping_address = shipping_address
        self.total = total


class Orders(Application[UUID]):
    def place_order(self, customer_id: str) -> UUID:
        order = Order(customer_id, ITEMS, ADDRESS, Decimal(TOTAL))
        self.save(order)
        return order.id


def library_env(database_url: str, concurrency: int) -> dict[str, str]:
    """The library's persistence module settings for the same database ordergraph uses."""
    url = make_url(database_url)
    if url.drivername.startswith("sqlite"):
        # Its SQLite module sets WAL and leaves synchronous at the build default (FULL here).
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(url.database)}
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(url.database),
        "POSTGRES_HOST": url.host or "127.0.0.1",
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_PASSWORD": url.password or "",
        "POSTGRES_POOL_SIZE": str(concurrency),
    }


def eventsourcing_rates(database_url: str, orders: int, concurrency: int) -> dict[str, float]:
    app = Orders(env=library_env(database_url, concurrency))
    try:
        for _ in range(WARM_UP):
            app.place_order("warm-up")
        started = time.perf_counter()
        for _ in range(orders):
            app.place_order("c-1")
        sequential = orders / (time.perf_counter() - started)
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            started = time.perf_counter()
            list(pool.map(lambda _: app.place_order("c-1"), range(orders)))
            concurrent = orders / (time.perf_counter() - started)
    finally:
        app.close()
    return {"sequential": sequential, "concurrent": concurrent}


async def ordergraph_rates(database_url: str, orders: int, concurrency: int) -> dict[str, float]:
    engine = engine_for_url(database_url, pool_size=concurrency + 2)
    try:
        await upgrade_to_head(engine)
        bus = build_bus(EventStore(engine))
        await _sequential(bus, WARM_UP)  # connections, statement caches
        sequential = await _sequential(bus, orders)
        concurrent = await _concurrent(bus, orders, concurrency)
    finally:
        await engine.dispose()
    return {"sequential": sequential, "concurrent": concurrent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--orders", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    result = {
        "ordergraph": asyncio.run(
            ordergraph_rates(args.database_url, args.orders, args.concurrency)
        ),
        "eventsourcing": eventsourcing_rates(args.database_url, args.orders, args.concurrency),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
