"""Inline against async projections, in one process, rounds alternating (issue 16).

The composition root of ``ordergraph serve`` (engine, store, notifier, projector, and the
inline projections that INLINE_PROJECTIONS names), without HTTP: what the lifecycle changes
is the storage side. Each round runs each lifecycle in turn on the same database, so a busy
machine's noise lands on both; read the ratios of the same round.

- place: ``--writers`` tasks dispatch PlaceOrder flat out; commands/s, over the time until
  every projection has them (what async leaves behind when the writers stop counts).
- read-your-writes: a quarter of the writers place an order and wait until every projection
  has its position (CheckpointWaiter, woken by the notifier) while the others keep placing;
  the figure is from the dispatch's return to the wait's.

    python -m bench.inline_rate --database-url sqlite:////tmp/inline.db
    python -m bench.inline_rate --database-url postgresql://postgres@127.0.0.1:5432/<fresh db>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from decimal import Decimal
from typing import Any

from domain.bus import CommandBus, build_bus
from domain.commands import PlaceOrder, new_id
from domain.values import Address, OrderLine
from graph.runtime.composition import running_core
from graph.runtime.settings import Settings
from readmodels.names import PROJECTION_NAMES
from readmodels.waiting import CheckpointWaiter

LIFECYCLES = {"async": (), "inline": ("all",)}
ADDRESS = Address(line1="1 Main St", city="Springfield", postal_code="12345", country="US")
LINES = (OrderLine("BOOK-1", 2, Decimal("19.99")), OrderLine("PEN-7", 3, Decimal("0.10")))


def place_order(customer_id: str = "warm") -> PlaceOrder:
    return PlaceOrder(
        order_id=new_id(), customer_id=customer_id, lines=LINES, shipping_address=ADDRESS
    )


async def _place_flat_out(bus: CommandBus, deadline: float, counts: list[int], who: str) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        await bus.dispatch(place_order(customer_id=who))
        counts[0] += 1


async def _probe(
    bus: CommandBus, waiter: CheckpointWaiter, deadline: float, waits: list[float]
) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        result = await bus.dispatch(place_order(customer_id="probe"))
        answered = time.perf_counter()
        assert await waiter.wait_for(result.position, PROJECTION_NAMES, within=30)
        waits.append((time.perf_counter() - answered) * 1000)


async def _round(url: str, lifecycle: str, writers: int, seconds: float) -> dict[str, Any]:
    settings = Settings(
        database_url=url, auth="none", inline_projections=LIFECYCLES[lifecycle], pool_size=30
    )
    async with running_core(settings, projector=True) as core:
        bus = build_bus(core.store)
        waiter = CheckpointWaiter(core.engine, core.notifier, PROJECTION_NAMES)
        await bus.dispatch(place_order())  # connections and statements warm
        loop = asyncio.get_running_loop()
        counts = [0]
        deadline = loop.time() + seconds
        await asyncio.gather(
            *(_place_flat_out(bus, deadline, counts, f"w{i}") for i in range(writers))
        )
        # Async leaves work behind when the writers stop: it counts, until it is projected.
        caught_up = time.perf_counter()
        assert await waiter.wait_for(await core.store.head_position(), within=60)
        behind = time.perf_counter() - caught_up
        placed = counts[0] / (seconds + behind)
        waits: list[float] = []
        probes = max(1, writers // 4)
        counts = [0]
        deadline = loop.time() + seconds
        await asyncio.gather(
            *(_probe(bus, waiter, deadline, waits) for _ in range(probes)),
            *(_place_flat_out(bus, deadline, counts, f"w{i}") for i in range(writers - probes)),
        )
        waits.sort()
    return {
        "lifecycle": lifecycle,
        "place_per_s": round(placed, 1),  # until projected
        "catch_up_s": round(behind, 3),
        "ryw_p50_ms": round(statistics.median(waits), 2),
        "ryw_p99_ms": round(waits[min(len(waits) - 1, int(len(waits) * 0.99))], 2),
        "probes": len(waits),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inline_rate", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    for _ in range(args.rounds):
        pair = [
            await _round(args.database_url, lc, args.writers, args.seconds) for lc in LIFECYCLES
        ]
        rounds.append(pair)
        print(json.dumps(pair), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
