"""The read side: projections agree with the commands, exactly once, on both databases."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.bus import CommandBus
from domain.commands import CancelOrder, PayOrder
from domain.eventstore.repository import order_id_of
from domain.eventstore.store import EventStore
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.projection import Envelope, Projection
from readmodels.projector import CONTENDED_RETRY, ProjectionFailed, Projector, ensure_checkpoints
from readmodels.queries import ReadModelQueries
from readmodels.registry import all_projections
from readmodels.rows import upsert, upserts_together
from readmodels.tables import daily_sales
from readmodels.waiting import CheckpointWaiter
from tests.support.factories import place_order
from tests.support.read_models import (
    BrokenOnCancel,
    catch_up_all,
    dump_after_full_rebuild,
    dump_read_models,
)
from tests.support.scenario import START, run_scenario


async def test_projections_agree_with_the_commands(
    store: EventStore, projector: Projector, queries: ReadModelQueries
) -> None:
    expected = await run_scenario(store, orders=60)

    await catch_up_all(projector)

    for order_id, want in expected.orders.items():
        view = await queries.order(order_id)
        assert view is not None
        got = {
            "customer_id": view.customer_id,
            "status": view.status,
            "total": view.total,
            "version": view.version,
        }
        assert got == want
        assert view.total == sum((line.line_total for line in view.lines), Decimal(0))
    for customer_id, want_c in expected.customers.items():
        summary = await queries.customer(customer_id)
        assert summary is not None
        assert (
            summary.orders_placed,
            summary.open_orders,
            summary.cancelled_orders,
            summary.total_paid,
            summary.last_order_at,
        ) == (want_c["placed"], want_c["open"], want_c["cancelled"], want_c["paid"], want_c["last"])
    first_day, last_day = min(expected.days), max(expected.days)
    sales = await queries.daily_sales(first_day - timedelta(days=1), last_day)
    assert sales[0].orders_placed == 0
    assert sales[0].revenue == Decimal("0.00")
    for day in sales[1:]:
        want_d = expected.days.get(
            day.date, {"placed": 0, "cancelled": 0, "revenue": Decimal(0), "items": 0}
        )
        assert (day.orders_placed, day.orders_cancelled, day.revenue, day.items_sold) == (
            want_d["placed"],
            want_d["cancelled"],
            want_d["revenue"],
            want_d["items"],
        )
    statuses = await queries.projection_statuses()
    assert {(s.name, s.lag, s.state) for s in statuses} == {
        (name, 0, "live") for name in PROJECTION_NAMES
    }


async def test_orders_and_customers_page_by_cursor(
    store: EventStore, projector: Projector, queries: ReadModelQueries
) -> None:
    expected = await run_scenario(store, orders=25)
    await catch_up_all(projector)

    seen: list[str] = []
    after = None
    while True:
        page = await queries.orders(first=7, after=after)
        assert page.total_count == 25
        seen += [edge.node.id for edge in page.edges]
        if not page.has_next_page:
            break
        after = page.end_cursor
    assert sorted(seen) == sorted(expected.orders)
    assert len(seen) == len(set(seen))

    mine = await queries.orders(customer_id="customer-1", status="PAID", first=100)
    want = [
        o
        for o, w in expected.orders.items()
        if w["customer_id"] == "customer-1" and w["status"] == "PAID"
    ]
    assert sorted(e.node.id for e in mine.edges) == sorted(want)
    assert mine.total_count == len(want)

    customers = await queries.customers(first=3)
    assert customers.has_next_page
    assert len(customers.edges) == 3
    rest = await queries.customers(first=100, after=customers.end_cursor)
    everyone = [e.node for e in customers.edges + rest.edges]
    assert len(everyone) == len(expected.customers)
    assert [c.last_order_at for c in everyone] == sorted(
        (c.last_order_at for c in everyone), reverse=True
    )


class Interrupted(Projection):
    """Wraps a real projection; its next apply writes its rows, then stops in the middle
    of the batch (before the commit) until the test says what happens."""

    def __init__(self, inner: Projection) -> None:
        self.inner, self.name, self.tables = inner, inner.name, inner.tables
        self.inside = asyncio.Event()
        self.armed = False

    async def apply(self, conn: AsyncConnection, batch: Sequence[Envelope]) -> None:
        await self.inner.apply(conn, batch)
        if self.armed:
            self.armed = False
            self.inside.set()
            await asyncio.Event().wait()  # until cancelled


async def test_a_projector_cancelled_mid_batch_resumes_exactly_once(
    engine: AsyncEngine, store: EventStore, notifier: InProcessNotifier
) -> None:
    await run_scenario(store, orders=30)
    for projection in map(Interrupted, all_projections()):
        first = Projector(engine, [projection], notifier, batch_size=40)
        await ensure_checkpoints(engine, [projection.name])
        assert await first.advance(projection, 40) == 40  # one clean batch
        projection.armed = True
        await first.start()
        await projection.inside.wait()
        await first.stop()  # killed mid-batch (on SQLite one writer at a time: one by one)

    restarted = Projector(engine, all_projections(), notifier, batch_size=40)
    await catch_up_all(restarted)

    incremental = await dump_read_models(engine)
    assert incremental == await dump_after_full_rebuild(engine)


class FailsOnce(Projection):
    """Wraps a real projection and fails in the middle of its second batch, once."""

    def __init__(self, inner: Projection) -> None:
        self.inner, self.name, self.tables = inner, inner.name, inner.tables
        self.batches = 0

    async def apply(self, conn: AsyncConnection, batch: Sequence[Envelope]) -> None:
        self.batches += 1
        await self.inner.apply(conn, batch[: len(batch) // 2])
        if self.batches == 2:
            raise ConnectionResetError("lost mid-batch")
        await self.inner.apply(conn, batch[len(batch) // 2 :])


async def test_a_batch_failing_mid_way_is_rolled_back_and_replayed_exactly_once(
    engine: AsyncEngine, store: EventStore, notifier: InProcessNotifier
) -> None:
    await run_scenario(store, orders=30)
    flaky = [FailsOnce(p) for p in all_projections()]
    projector = Projector(engine, flaky, notifier, batch_size=25)

    await catch_up_all(projector)

    assert all(p.batches > 2 for p in flaky)
    incremental = await dump_read_models(engine)
    assert incremental == await dump_after_full_rebuild(engine)


async def test_a_failing_projection_stops_at_its_event_and_resumes_when_fixed(
    engine: AsyncEngine,
    bus: CommandBus,
    notifier: InProcessNotifier,
    queries: ReadModelQueries,
    waiter: CheckpointWaiter,
) -> None:
    healthy = [p for p in all_projections() if p.name != "customer_summaries"]
    broken = BrokenOnCancel(next(p for p in all_projections() if p.name == "customer_summaries"))
    projector = Projector(engine, [*healthy, broken], notifier, batch_size=50, max_backoff=0.05)
    before = await bus.dispatch(place_order(customer_id="c-1"))
    doomed = await bus.dispatch(place := place_order(customer_id="c-1"))
    cancelled = await bus.dispatch(CancelOrder(order_id=place.order_id, reason="x"))
    after = await bus.dispatch(place_order(customer_id="c-1"))

    await projector.start()
    try:
        healthy_names = [p.name for p in healthy]
        assert await waiter.wait_for(after.position, healthy_names, within=10)
        status = {s.name: s for s in await queries.projection_statuses()}["customer_summaries"]
        while status.state != "failed":  # the failure is recorded after the rollback
            await waiter.wait_for(after.position, ["customer_summaries"], within=0.05)
            status = {s.name: s for s in await queries.projection_statuses()}["customer_summaries"]
        assert status.error_position == cancelled.position
        assert "cannot handle cancellations" in (status.error or "")
        assert doomed.position <= status.position < cancelled.position
        summary = await queries.customer("c-1")
        assert summary is not None
        assert summary.orders_placed == 2
        assert before.position < doomed.position

        broken.broken = False
        assert await waiter.wait_for(after.position, ["customer_summaries"], within=10)
    finally:
        await projector.stop()
    summary = await queries.customer("c-1")
    assert summary is not None
    assert (summary.orders_placed, summary.cancelled_orders, summary.open_orders) == (3, 1, 2)
    status = {s.name: s for s in await queries.projection_statuses()}["customer_summaries"]
    assert (status.state, status.error, status.lag) == ("live", None, 0)


async def test_catch_up_reports_a_failure_with_its_position(
    engine: AsyncEngine, bus: CommandBus, notifier: InProcessNotifier
) -> None:
    broken = BrokenOnCancel(all_projections()[1])
    await bus.dispatch(place := place_order())
    cancelled = await bus.dispatch(CancelOrder(order_id=place.order_id, reason="x"))

    with pytest.raises(ProjectionFailed) as failure:
        await Projector(engine, [broken], notifier).catch_up(broken.name)
    assert failure.value.position == cancelled.position


async def test_waiting_returns_once_the_position_is_reached(
    bus: CommandBus, projector: Projector, waiter: CheckpointWaiter
) -> None:
    result = await bus.dispatch(place_order())
    waiting = asyncio.create_task(waiter.wait_for(result.position, within=10))
    await asyncio.sleep(0)  # let it subscribe before the projector runs
    await projector.start()
    try:
        assert await waiting is True
        assert await waiter.wait_for(result.position, within=0) is True  # already there
    finally:
        await projector.stop()


async def test_waiting_times_out_cleanly(
    bus: CommandBus, waiter: CheckpointWaiter, notifier: InProcessNotifier
) -> None:
    result = await bus.dispatch(place_order())

    assert await waiter.wait_for(result.position, within=0.05) is False
    assert notifier.subscriber_count == 0


async def test_concurrent_writers_are_projected_exactly_once(
    store: EventStore,
    bus: CommandBus,
    projector: Projector,
    queries: ReadModelQueries,
    waiter: CheckpointWaiter,
) -> None:
    async def writer(n: int) -> int:
        last = 0
        for k in range(10):
            placed = await bus.dispatch(place_order(customer_id=f"c-{n}"))
            if k % 2:
                paid = await bus.dispatch(
                    PayOrder(order_id=placed.order_id, amount=Decimal("40.08"))
                )
                last = paid.position
            last = max(last, placed.position)
        return last

    await projector.start()
    try:
        lasts = await asyncio.gather(*(writer(n) for n in range(16)))
        assert await waiter.wait_for(max(lasts), within=30)
    finally:
        await projector.stop()

    stored = await store.read_all(after=0, limit=10_000)
    page = await queries.orders(first=100)
    assert page.total_count == 160
    views = {}
    after = None
    while True:
        page = await queries.orders(first=100, after=after)
        views.update({e.node.id: e.node for e in page.edges})
        if not page.has_next_page:
            break
        after = page.end_cursor
    versions = {}
    for event in stored:
        versions[order_id_of(event.stream_id)] = event.stream_version
    assert {oid: v.version for oid, v in views.items()} == versions
    for n in range(16):
        summary = await queries.customer(f"c-{n}")
        assert summary is not None
        assert (summary.orders_placed, summary.total_paid) == (10, Decimal("200.40"))
    day = await queries.daily_sales(START.date(), START.date() + timedelta(days=400))
    assert sum(d.orders_placed for d in day) == 160


async def test_two_projectors_take_turns_and_apply_each_event_once(
    engine: AsyncEngine,
    bus: CommandBus,
    store: EventStore,
    notifier: InProcessNotifier,
    queries: ReadModelQueries,
    waiter: CheckpointWaiter,
) -> None:
    # As two processes would: separate projectors on one database, each locking the
    # checkpoints for its pass (on PostgreSQL, SKIP LOCKED makes the other look again).
    first = Projector(engine, all_projections(), notifier, batch_size=7)
    second = Projector(engine, all_projections(), notifier, batch_size=7)
    store.on_append(first.wake)
    store.on_append(second.wake)
    await first.start()
    await second.start()
    try:
        results = await asyncio.gather(
            *(bus.dispatch(place_order(customer_id=f"c-{n % 4}")) for n in range(60))
        )
        assert await waiter.wait_for(max(r.position for r in results), within=30)
    finally:
        await first.stop()
        await second.stop()

    page = await queries.orders(first=100)
    assert page.total_count == 60
    placed = [await queries.customer(f"c-{n}") for n in range(4)]
    assert sum(c.orders_placed for c in placed if c is not None) == 60
    incremental = await dump_read_models(engine)
    assert incremental == await dump_after_full_rebuild(engine)


class CountingProjector(Projector):
    """Counts the passes it makes over its projections."""

    passes = 0

    async def advance_together(self, projections: Sequence[Projection], batch_size: int) -> int:
        self.passes += 1
        return await super().advance_together(projections, batch_size)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_projector_waits_between_looks_while_another_holds_the_checkpoints(
    engine: AsyncEngine, notifier: InProcessNotifier
) -> None:
    """Checkpoints held by another instance (mid-batch, or a rebuild) are looked at again
    soon, but not in a loop that takes a core for as long as they are held."""
    projector = CountingProjector(engine, all_projections(), notifier, poll_interval=1.0)
    await ensure_checkpoints(engine, PROJECTION_NAMES)
    async with engine.connect() as holder:
        await holder.begin()
        await holder.execute(sa.text("SELECT * FROM projection_checkpoints FOR UPDATE"))
        await projector.start()
        try:
            await asyncio.sleep(1.0)  # measuring what it does meanwhile, not waiting on it
            held_passes = projector.passes
        finally:
            await holder.rollback()
            await projector.stop()
    assert 2 <= held_passes <= 1.0 / CONTENDED_RETRY + 10


async def test_an_upsert_writes_each_row_and_of_two_with_one_key_keeps_the_later(
    engine: AsyncEngine,
) -> None:
    day, other = START.date(), (START + timedelta(days=1)).date()

    def sales(on: object, placed: int, revenue: str) -> dict[str, object]:
        return {
            "day": on,
            "orders_placed": placed,
            "orders_cancelled": 0,
            "revenue": Decimal(revenue),
            "items_sold": placed,
        }

    async with engine.begin() as conn:
        await upsert(conn, daily_sales, [sales(day, 1, "1.00")], ["day"])
        # One existing key twice, and a new one: PostgreSQL writes them in one statement.
        rows = [sales(day, 2, "2.50"), sales(other, 7, "9.99"), sales(day, 3, "3.75")]
        await upsert(conn, daily_sales, rows, ["day"])
        found = await conn.execute(
            sa.select(daily_sales.c.day, daily_sales.c.orders_placed, daily_sales.c.revenue)
        )
        assert sorted(tuple(row) for row in found) == [
            (day, 3, Decimal("3.75")),
            (other, 7, Decimal("9.99")),
        ]


async def test_an_upsert_of_more_rows_than_one_statement_holds_writes_them_all(
    engine: AsyncEngine,
) -> None:
    # SQLite takes at most 500 rows a statement here: 7,000 rows take fifteen, and the key
    # written first is written again, later, in the last.
    first = START.date()
    rows = [
        {
            "day": first + timedelta(days=n),
            "orders_placed": n,
            "orders_cancelled": 0,
            "revenue": Decimal(n),
            "items_sold": n,
        }
        for n in range(7000)
    ]
    rows.append({**rows[0], "orders_placed": 99, "revenue": Decimal("99.50")})
    async with engine.begin() as conn:
        await upsert(conn, daily_sales, rows, ["day"])
        found = await conn.execute(
            sa.select(daily_sales.c.day, daily_sales.c.orders_placed, daily_sales.c.revenue)
        )
        stored = {row.day: (row.orders_placed, row.revenue) for row in found}
    assert len(stored) == 7000
    assert stored[first] == (99, Decimal("99.50"))
    assert stored[first + timedelta(days=6999)] == (6999, Decimal(6999))


async def test_upserts_made_together_are_written_when_the_block_ends_or_not_at_all(
    engine: AsyncEngine,
) -> None:
    def sales(days: int, placed: int) -> dict[str, object]:
        on = (START + timedelta(days=days)).date()
        return {
            "day": on,
            "orders_placed": placed,
            "orders_cancelled": 0,
            "revenue": Decimal("1.00"),
            "items_sold": placed,
        }

    async def stored(conn: AsyncConnection) -> list[tuple[object, ...]]:
        query = sa.select(daily_sales.c.day, daily_sales.c.orders_placed)
        return sorted(tuple(row) for row in await conn.execute(query))

    async def failing_inside(conn: AsyncConnection) -> None:
        async with conn.begin_nested(), upserts_together(conn):
            await upsert(conn, daily_sales, [sales(2, 9)], ["day"])
            raise RuntimeError("a projection that fails")

    async with engine.begin() as conn:
        async with upserts_together(conn):
            await upsert(conn, daily_sales, [sales(0, 1), sales(1, 2)], ["day"])
            await upsert(conn, daily_sales, [sales(0, 3)], ["day"])  # in order: the later wins
        assert await stored(conn) == [(START.date(), 3), ((START + timedelta(days=1)).date(), 2)]
        with pytest.raises(RuntimeError):
            await failing_inside(conn)
        assert len(await stored(conn)) == 2
