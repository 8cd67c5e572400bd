"""Projection versions, blue/green: a new version is built beside the active one while it
serves under load, switched to atomically, equal to a replay from scratch; builds resume
after a kill, have exactly one builder, and start by themselves when a deploy bumps a
projection's version. On both databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.bus import CommandBus
from domain.commands import PayOrder
from domain.eventstore.engines import create_engine
from readmodels.builds import Builder, BuildLost, drop_retired, ensure_versions, start_build
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.order_views import OrderViews
from readmodels.projection import Envelope, Projection
from readmodels.projector import Projector
from readmodels.queries import ReadModelQueries
from readmodels.rebuild import rebuild
from readmodels.registry import all_projections
from readmodels.tables import checkpoints
from tests.support.factories import place_order
from tests.support.ops import running
from tests.support.read_models import dump_read_models
from tests.support.waits import until

DEADLINE = 60.0


async def active_versions(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(checkpoints.c.name, checkpoints.c.version))
        return {row.name: row.version for row in rows}


async def table_names(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))


async def place_some(bus: CommandBus, orders: int) -> int:
    last = 0
    for n in range(orders):
        placed = await bus.dispatch(place_order(customer_id=f"c-{n % 7}"))
        last = placed.position
        if n % 3 == 0:
            paid = await bus.dispatch(PayOrder(order_id=placed.order_id, amount=Decimal("40.08")))
            last = paid.position
    return last


ORDER = "query($id: ID!, $p: Position) { order(id: $id, atLeast: $p) { id version } }"
CUSTOMER = "query($id: ID!, $p: Position) { customer(id: $id, atLeast: $p) { ordersPlaced } }"
COUNTS = "{ orders(first: 1) { totalCount } customers(first: 100) { totalCount } }"


async def test_a_rebuild_under_load_hides_no_row_honours_every_wait_and_equals_a_replay(
    engine: AsyncEngine, database_url: str, bus: CommandBus
) -> None:
    preloaded = await place_some(bus, 300)
    seen: dict[str, int] = {}  # order id -> version seen (rows the active version had)
    acknowledged: dict[str, list[int]] = defaultdict(list)  # customer -> positions
    stop, warm = asyncio.Event(), asyncio.Event()
    figures = {"reads": 0, "waits": 0, "slowest": 0.0}

    async with running(engine, database_url, read_wait_seconds=20) as server:
        assert await server.app.state.services.waiter.wait_for(preloaded, within=DEADLINE)
        for order_id in [
            e.node.id for e in (await ReadModelQueries(engine).orders(first=100)).edges
        ]:
            seen[order_id] = 1

        async def write(k: int) -> None:
            n = 0
            while not stop.is_set():
                customer = f"c-{(k + n) % 7}"
                n += 1
                placed = await server.place(customerId=customer)
                position = placed["position"]
                acknowledged[customer].append(position)
                started = time.perf_counter()
                got = await server.gql(ORDER, {"id": placed["orderId"], "p": position})
                summary = await server.gql(CUSTOMER, {"id": customer, "p": position})
                figures["slowest"] = max(figures["slowest"], time.perf_counter() - started)
                figures["waits"] += 2
                assert "stale" not in got.get("extensions", {}), got
                assert got["data"]["order"] == {"id": placed["orderId"], "version": 1}
                at_least = sum(p <= position for p in acknowledged[customer])
                assert summary["data"]["customer"]["ordersPlaced"] >= at_least, summary
                seen[placed["orderId"]] = 1
                warm.set()

        async def read() -> None:
            last = (0, 0)
            while not stop.is_set():
                order_id = random.choice(list(seen))
                got = await server.gql(ORDER, {"id": order_id})
                assert got["data"]["order"] is not None, f"order {order_id} went missing"
                counts = (await server.gql(COUNTS))["data"]
                now = (counts["orders"]["totalCount"], counts["customers"]["totalCount"])
                assert now >= last, f"fewer rows than before: {now} < {last}"
                last = now
                figures["reads"] += 2

        load = [asyncio.create_task(write(k)) for k in range(3)]
        load += [asyncio.create_task(read()) for _ in range(2)]
        builder_engine = create_engine(database_url)
        try:
            await asyncio.wait_for(warm.wait(), DEADLINE)
            before = dict(figures)
            started = time.perf_counter()
            done = await rebuild(
                builder_engine, all_projections(), InProcessNotifier(), batch_size=2
            )
            rebuild_seconds = time.perf_counter() - started
            assert done.versions == dict.fromkeys(PROJECTION_NAMES, 2)
            assert await active_versions(engine) == dict.fromkeys(PROJECTION_NAMES, 2)
            during = {k: figures[k] - before[k] for k in ("reads", "waits")}
            during["slowest"] = figures["slowest"]
            for _ in range(3):  # and some more after the switch
                await asyncio.sleep(0)
                if any(t.done() for t in load):
                    break
            stop.set()
            await asyncio.gather(*load)
        finally:
            stop.set()
            for task in load:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*load, return_exceptions=True)
            await builder_engine.dispose()
        head = await server.store.head_position()
        assert await server.app.state.services.waiter.wait_for(head, within=DEADLINE)
        built_under_load = await dump_read_models(engine, dict.fromkeys(PROJECTION_NAMES, 2))
    print(
        f"\nrebuild of all three under load: {rebuild_seconds:.1f}s; meanwhile {during['reads']}"
        f" plain reads and {during['waits']} atLeast reads, none missing a row, none stale;"
        f" slowest write-then-read {during['slowest'] * 1000:.0f} ms"
    )
    assert during["reads"] >= 4  # the load went on during the rebuild
    assert during["waits"] >= 4

    # A replay from scratch, with nothing else going on, builds the same tables.
    await rebuild(engine, all_projections(), InProcessNotifier(), batch_size=1000)
    assert await dump_read_models(engine, dict.fromkeys(PROJECTION_NAMES, 3)) == built_under_load

    # Clean-up drops both retired versions' tables; the active one still answers.
    tables = await table_names(engine)
    assert {"order_views", "order_views_v2", "order_views_v3"} <= tables
    dropped = await drop_retired(engine, all_projections(), older_than=0)
    assert sorted(dropped) == sorted((n, v) for n in PROJECTION_NAMES for v in (1, 2))
    after = await table_names(engine)
    gone = {"order_views", "customer_summaries", "customer_orders", "daily_sales"}
    assert not (gone | {f"{t}_v2" for t in gone}) & after
    assert {f"{t}_v3" for t in gone} <= after
    placed = 300 + sum(map(len, acknowledged.values()))
    assert (await ReadModelQueries(engine).orders(first=1)).total_count == placed
    statuses = {s.name: s for s in await ReadModelQueries(engine).projection_statuses()}
    assert [(v.version, v.status) for v in statuses["order_views"].versions] == [
        (1, "dropped"),
        (2, "dropped"),
        (3, "active"),
    ]


async def test_a_killed_rebuild_resumes_from_its_own_checkpoint_and_never_touches_the_active(
    engine: AsyncEngine, database_url: str, bus: CommandBus, projector: Projector
) -> None:
    head = await place_some(bus, 300)
    for name in PROJECTION_NAMES:
        await projector.catch_up(name)
    active_before = await dump_read_models(engine)
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "graph.runtime.cli", "rebuild", "--all", "--batch-size", "5"]

    first = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert first.stderr is not None
    async with asyncio.timeout(DEADLINE):  # kill it once the build is well under way
        shown = b""
        while True:
            chunk = await first.stderr.read(300)
            assert chunk, f"rebuild ended before it could be killed: {shown.decode()}"
            shown += chunk
            positions = await _build_positions(engine)
            if positions and min(positions.values()) >= head // 4:
                break
    first.send_signal(signal.SIGKILL)
    await first.wait()

    stopped = await _build_positions(engine)
    assert set(stopped) == set(PROJECTION_NAMES)
    assert all(0 < p < head for p in stopped.values()), stopped
    assert await active_versions(engine) == dict.fromkeys(PROJECTION_NAMES, 1)
    assert await dump_read_models(engine) == active_before  # the active one untouched
    # What the build has so far is exactly what its checkpoint says: a replay up to there.
    # (order_views after N events of this scenario holds the orders placed by then.)

    second = await asyncio.create_subprocess_exec(
        *command[:-1], "500", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(second.communicate(), DEADLINE)
    assert second.returncode == 0, err.decode()
    text = out.decode()
    assert "resumed the builds under way (" in text, text
    for name in PROJECTION_NAMES:
        assert f"{name} from {stopped[name]}" in text, text
    replayed = int(text.split("switched to ")[1].split(": ")[1].split(" events")[0])
    assert replayed <= head - min(stopped.values()) + 1  # the rest, not all again
    assert await active_versions(engine) == dict.fromkeys(PROJECTION_NAMES, 2)
    assert await dump_read_models(engine) == active_before  # equal to the complete replay


async def _build_positions(engine: AsyncEngine) -> dict[str, int]:
    statuses = await ReadModelQueries(engine).projection_statuses()
    return {s.name: v.position for s in statuses for v in s.versions if v.status == "building"}


class Counting(Projection):
    """A real projection that counts the batches it applies (one counter per builder)."""

    def __init__(self, inner: Projection, counter: list[int]) -> None:
        self.inner, self.counter = inner, counter
        self.name, self.tables, self.handles = inner.name, inner.tables, inner.handles
        self.table_version = inner.table_version

    def at(self, version: int) -> Projection:
        return Counting(self.inner.at(version), self.counter)

    async def apply(self, conn: AsyncConnection, batch: Sequence[Envelope]) -> None:
        self.counter.append(len(batch))
        await self.inner.apply(conn, batch)


async def test_two_builders_at_once_exactly_one_builds_and_a_dead_ones_lease_passes_on(
    engine: AsyncEngine, database_url: str, bus: CommandBus, notifier: InProcessNotifier
) -> None:
    await place_some(bus, 40)
    await ensure_versions(engine, all_projections())
    version, resumed = await start_build(engine, OrderViews())
    assert (version, resumed) == (2, False)
    engines = [create_engine(database_url) for _ in range(2)]  # as two processes would
    counts: list[list[int]] = [[], []]
    builders = [
        Builder(e, [Counting(OrderViews(), c)], notifier, batch_size=7, lease_seconds=30)
        for e, c in zip(engines, counts, strict=True)
    ]
    try:
        # The first to claim builds; while it holds the lease the other is refused.
        assert await builders[0].claim("order_views", version) is None
        with pytest.raises(BuildLost, match="is being built by " + builders[0].identity):
            await builders[1].build([("order_views", version)])
        assert await builders[0].build([("order_views", version)]) > 0
        assert counts[0]
        assert counts[1] == []  # the other applied nothing at all
        assert (await active_versions(engine))["order_views"] == 2

        # A builder that stops answering keeps its lease until it expires; then another
        # takes over from the build's checkpoint, and the first one's next batch is refused.
        version, _ = await start_build(engine, OrderViews())
        slow, quick = (
            Builder(e, [OrderViews()], notifier, batch_size=7, lease_seconds=0.5) for e in engines
        )
        assert await slow.claim("order_views", version) is None
        step = await slow.step(("order_views", version))
        assert step.positions[("order_views", version)] > 0
        assert not step.switched
        assert await quick.claim("order_views", version) == slow.identity
        await asyncio.sleep(0.6)  # the lease runs out on the clock
        assert await quick.claim("order_views", version) is None
        assert await quick.build([("order_views", version)]) > 0
        with pytest.raises(BuildLost):  # the one that lost its lease gets no batch
            await slow.step(("order_views", version))
    finally:
        for e in engines:
            await e.dispose()
    assert (await active_versions(engine))["order_views"] == 3
    # Two builders one after the other, the second from the first's checkpoint, built the
    # same as one builder from scratch.
    assert await dump_read_models(engine, {"order_views": 3}) == await dump_read_models(
        engine, {"order_views": 2}
    )


async def _caught_up(engine: AsyncEngine) -> bool:
    return not max(s.lag for s in await ReadModelQueries(engine).projection_statuses())


async def _switched(engine: AsyncEngine, name: str, version: int) -> bool:
    return (await active_versions(engine)).get(name) == version


async def _built_by(engine: AsyncEngine, name: str, version: int, code: int) -> bool:
    statuses = {s.name: s for s in await ReadModelQueries(engine).projection_statuses()}
    return any((v.version, v.code_version) == (version, code) for v in statuses[name].versions)


class OrderViewsV2(OrderViews):
    """A deploy of order views with a bumped version."""

    version = 2


async def test_a_deploy_that_bumps_a_version_builds_it_in_the_background_and_switches(
    engine: AsyncEngine, bus: CommandBus, notifier: InProcessNotifier
) -> None:
    await place_some(bus, 60)
    old = Projector(engine, all_projections(), notifier, poll_interval=0.05, batch_size=20)
    await old.start()
    try:
        await until(lambda: _caught_up(engine), notifier)
    finally:
        await old.stop()

    deployed = [OrderViewsV2(), *all_projections()[1:]]
    new = Projector(
        engine, deployed, notifier, poll_interval=0.05, batch_size=20, build_batch_size=9
    )
    await new.start()  # sees code version 2 above the active version's 1: builds version 2
    try:
        assert await _built_by(engine, "order_views", 2, 2)
        await place_some(bus, 10)  # live writes while it builds
        await until(lambda: _switched(engine, "order_views", 2), notifier)
        assert await new.builder.builds_to_do() == {}
        await until(lambda: _caught_up(engine), notifier)
    finally:
        await new.stop()
    statuses = {s.name: s for s in await ReadModelQueries(engine).projection_statuses()}
    assert [(v.version, v.code_version, v.status) for v in statuses["order_views"].versions] == [
        (1, 1, "retired"),
        (2, 2, "active"),
    ]
    assert (statuses["customer_summaries"].version, statuses["daily_sales"].version) == (1, 1)
    built = await dump_read_models(engine, {"order_views": 2})
    await rebuild(engine, deployed[:1], notifier)  # a replay from scratch: version 3
    assert await dump_read_models(engine, {"order_views": 3}) == built
    # Old code left running (a rolling deploy) does not feed the version newer code built.
    older = Projector(engine, all_projections(), notifier)
    await place_some(bus, 1)
    assert await older.advance(all_projections()[0], 50) == 0
