"""Integration relay: throughput on a backlog, against the same NATS client publishing the same
messages in a tight loop, and commit-to-PubAck latency under a write load.

    python -m bench.relay_rate [--backend sqlite|postgresql | --database-url URL]
                               [--orders N] [--seconds S] [--json]

Needs a JetStream at $NATS_URL (default nats://127.0.0.1:4222); uses streams of its own
(random names) and deletes them. Prints one line per figure, or (``--json``, as ``python -m
bench`` runs it) one JSON object. ``--database-url`` names an empty database to use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import nats
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.append_rate import _command
from bench.databases import throwaway
from domain.bus import build_bus
from domain.eventstore.store import EventStore
from graph.runtime.composition import engine_for_url
from integration.contract import to_message
from integration.jetstream import JetStreamPublisher
from integration.relay import RELAY_NAME, Relay
from migrations import upgrade_to_head
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.notifications.messages import ProjectionUpdate

NATS_URL = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")


async def _baseline(store: EventStore, batch: int) -> float:
    """The same messages, the same client, no database: nats-py's own ``publish_async`` in
    a tight loop, each batch (of the relay's size) of PubAcks awaited."""
    recorded = await store.read_all(after=0, limit=10_000_000)
    suffix = uuid.uuid4().hex[:8]
    publisher = JetStreamPublisher(NATS_URL, f"BENCH_BASE_{suffix}", f"benchbase{suffix}")
    await publisher.connect()  # creates the stream
    messages = [to_message(r, publisher.subject_prefix) for r in recorded]
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    try:
        started = time.perf_counter()
        for start in range(0, len(messages), batch):
            futures = [
                await js.publish_async(m.subject, m.body, headers=dict(m.headers))
                for m in messages[start : start + batch]
            ]
            await asyncio.gather(*futures)
        return len(messages) / (time.perf_counter() - started)
    finally:
        await nc.close()
        await _delete(publisher)


async def _delete(publisher: JetStreamPublisher) -> None:
    await publisher.close()
    nc = await nats.connect(NATS_URL)
    await nc.jetstream().delete_stream(publisher.stream)
    await nc.close()


async def run(backend: str, url: str | None, orders: int, seconds: float) -> dict[str, Any]:
    if url is not None:
        return await _on(url, orders, seconds)
    with tempfile.TemporaryDirectory() as directory:
        async with throwaway(backend, Path(directory), "relay") as made:
            return await _on(made, orders, seconds)


async def _on(url: str, orders: int, seconds: float) -> dict[str, Any]:
    engine = engine_for_url(url, pool_size=20, max_overflow=20)
    try:
        await upgrade_to_head(engine)
        return await _measure(engine, orders, seconds)
    finally:
        await engine.dispose()


async def _measure(engine: AsyncEngine, orders: int, seconds: float) -> dict[str, Any]:
    store = EventStore(engine)
    bus = build_bus(store)
    remaining = iter(range(orders))

    async def backlog_writer() -> None:
        for _ in remaining:
            await bus.dispatch(_command())

    await asyncio.gather(*(backlog_writer() for _ in range(16)))
    suffix = uuid.uuid4().hex[:8]
    publisher = JetStreamPublisher(NATS_URL, f"BENCH_RELAY_{suffix}", f"benchrelay{suffix}")
    notifier = InProcessNotifier()
    relay = Relay(engine, publisher, notifier)
    try:
        baseline = await _baseline(store, relay.batch_size)
        await publisher.connect()  # the stream made, as the baseline's was, before the clock
        started = time.perf_counter()
        drained = await relay.drain()
        rate = drained / (time.perf_counter() - started)

        # Under a write load: 16 writers for `seconds`; commit = dispatch returned,
        # acknowledged = the relay's checkpoint notification covering that position.
        pending: list[tuple[int, float]] = []  # (position, commit time), a heap
        latencies: list[float] = []
        commands = 0
        max_lag = 0
        head = 0
        store.on_append(relay.wake)
        await relay.start()
        stop_at = time.perf_counter() + seconds

        async def writer() -> None:
            nonlocal commands, head
            while time.perf_counter() < stop_at:
                result = await bus.dispatch(_command())
                heapq.heappush(pending, (result.position, time.perf_counter()))
                commands += 1
                head = max(head, result.position)

        async def watch() -> None:
            nonlocal max_lag
            async with notifier.subscribe() as updates:
                async for update in updates:
                    if not isinstance(update, ProjectionUpdate) or update.projection != RELAY_NAME:
                        continue
                    now = time.perf_counter()
                    while pending and pending[0][0] <= update.position:
                        latencies.append(now - heapq.heappop(pending)[1])
                    max_lag = max(max_lag, head - update.position)

        watcher = asyncio.create_task(watch())
        await asyncio.gather(*(writer() for _ in range(16)))
        async with asyncio.timeout(60):
            while True:  # the last notifications may still be on their way
                if not pending:
                    break
                await asyncio.sleep(0.01)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        latencies.sort()
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        return {
            "events": drained,
            "rate": rate,
            "baseline": baseline,
            "commands_per_s": commands / seconds,
            "seconds": seconds,
            "p50_ms": p50,
            "p99_ms": p99,
            "max_lag": max_lag,
        }
    finally:
        await relay.stop()
        await _delete(publisher)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--database-url", help="an empty database (default: a throwaway one)")
    parser.add_argument("--orders", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    r = asyncio.run(run(args.backend, args.database_url, args.orders, args.seconds))
    if args.json:
        print(json.dumps(r))
        return
    print(
        f"backlog of {r['events']} events: relay {r['rate']:,.0f} events/s, baseline (same"
        f" client, tight loop) {r['baseline']:,.0f} events/s ({r['rate'] / r['baseline']:.2f}x)"
    )
    print(
        f"under 16 writers ({r['commands_per_s']:,.0f} commands/s for {r['seconds']:.0f} s):"
        f" commit-to-PubAck p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms,"
        f" max lag {r['max_lag']} events"
    )


if __name__ == "__main__":
    main()
