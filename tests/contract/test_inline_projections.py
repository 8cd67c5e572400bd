"""Inline projections: applied in the append's transaction, handing over to the async
projector and back without applying an event twice or skipping one, on both databases."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain import events
from domain.bus import CommandBus
from domain.eventstore.engines import write_transaction
from domain.eventstore.store import EventStore, NewEvent, StreamState
from readmodels.builds import Builder, ensure_versions, start_build
from readmodels.customer_summaries import CustomerSummaries
from readmodels.daily_sales import DailySales
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.notifications.messages import ProjectionUpdate
from readmodels.order_views import OrderViews
from readmodels.projection import Envelope, Projection
from readmodels.projector import ProjectionFailed, Projector
from readmodels.queries import ReadModelQueries
from readmodels.registry import all_projections
from readmodels.tables import checkpoints, daily_sales, order_views
from readmodels.versions import table_at
from readmodels.waiting import CheckpointWaiter
from tests.support.factories import place_order
from tests.support.inline import Orders, checkpoint_positions, checkpoint_states, go_inline
from tests.support.locks import until_waiting_for_a_lock
from tests.support.read_models import catch_up_all, dump_after_full_rebuild, dump_read_models


@pytest.fixture(autouse=True)
async def versions(engine: AsyncEngine) -> None:
    """The checkpoints and active versions, as the projector makes them at start-up."""
    await ensure_versions(engine, all_projections())


async def test_a_command_is_in_every_inline_projection_when_its_append_returns(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    notifier: InProcessNotifier,
    queries: ReadModelQueries,
) -> None:
    go_inline(store, notifier)
    async with notifier.subscribe() as updates:
        placed = await bus.dispatch(place_order(customer_id="ann"))

        # No projector runs: the append's own transaction projected it.
        assert await checkpoint_positions(engine) == dict.fromkeys(
            PROJECTION_NAMES, placed.position
        )
        view = await queries.order(placed.order_id)
        assert view is not None
        assert view.status == "PLACED"
        summary = await queries.customer("ann")
        assert summary is not None
        assert summary.orders_placed == 1
        heard = {await anext(updates) for _ in PROJECTION_NAMES}
    assert heard == {ProjectionUpdate(name, placed.position) for name in PROJECTION_NAMES}


# --- inline and async agree -------------------------------------------------------------

ORDER_IDS = ["o1", "o2", "o3", "o4"]
LIFECYCLES: list[frozenset[str]] = [
    frozenset(PROJECTION_NAMES),  # all inline
    frozenset(),  # all async
    frozenset({"order_views"}),
    frozenset({"customer_summaries", "daily_sales"}),
]


@dataclass(frozen=True)
class Send:
    action: str  # place | pay | overpay | ship | cancel | readdress
    order_id: str
    customer_id: str = "c1"


@dataclass(frozen=True)
class Segment:
    """Commands sent with these projections inline and the others async, one by one or
    several at once (sharing group-commit batches); then maybe the projector catches up."""

    inline: frozenset[str]
    sends: tuple[tuple[Send, ...], ...]
    catch_up: bool


sends = st.builds(
    Send,
    action=st.sampled_from(["place", "place", "pay", "overpay", "ship", "cancel", "readdress"]),
    order_id=st.sampled_from(ORDER_IDS),
    customer_id=st.sampled_from(["c1", "c2"]),
)
segments = st.builds(
    Segment,
    inline=st.sampled_from(LIFECYCLES),
    sends=st.lists(st.lists(sends, min_size=1, max_size=4).map(tuple), min_size=1, max_size=6).map(
        tuple
    ),
    catch_up=st.booleans(),
)


async def _send(orders: Orders, send: Send, example: str) -> None:
    order_id = f"{example}-{send.order_id}"  # examples share the database
    if send.action == "place":
        await orders.place(order_id, send.customer_id, quantity=len(orders.totals) + 1)
    elif send.action in ("pay", "overpay"):
        await orders.pay(order_id, exact=send.action == "pay")
    else:
        await getattr(orders, send.action)(order_id)


@pytest.mark.timeout(900)
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(script=st.lists(segments, min_size=2, max_size=5))
async def test_inline_and_async_projections_build_the_same_read_models(
    script: list[Segment],
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    notifier: InProcessNotifier,
    projector: Projector,
) -> None:
    # Examples accumulate in one database (later ones meet what earlier ones left); each
    # starts with the projector caught up.
    await catch_up_all(projector)
    orders = Orders(bus)
    example = uuid.uuid4().hex[:8]
    always_inline = True
    for segment in script:
        go_inline(store, notifier, segment.inline)
        always_inline = always_inline and segment.inline == frozenset(PROJECTION_NAMES)
        for together in segment.sends:
            await asyncio.gather(*(_send(orders, send, example) for send in together))
        if segment.catch_up:
            await catch_up_all(projector)

    head = await store.head_position()
    if always_inline:  # nothing was left to the projector
        assert set((await checkpoint_positions(engine)).values()) == {head}
    await catch_up_all(projector)
    assert set((await checkpoint_positions(engine)).values()) == {head}
    assert await dump_read_models(engine) == await dump_after_full_rebuild(engine)


# --- a projection that fails inline -----------------------------------------------------


class RefusedOnCancel(DailySales):
    """Daily sales whose SQL the database refuses for a batch holding a cancellation: its
    writes come first, so they are there to be rolled back."""

    async def apply(self, conn: AsyncConnection, batch: Sequence[Envelope]) -> None:
        await super().apply(conn, batch)
        if any(isinstance(e.event, events.OrderCancelled) for e in batch):
            table = self.table(daily_sales)
            await conn.execute(table.insert().values(day=None))  # NOT NULL: refused


def _with_broken_daily_sales() -> list[Projection]:
    return [OrderViews(), CustomerSummaries(), RefusedOnCancel()]


async def test_a_projection_that_fails_inline_is_rolled_back_alone_and_left_to_the_projector(
    engine: AsyncEngine, store: EventStore, bus: CommandBus, notifier: InProcessNotifier
) -> None:
    projections = _with_broken_daily_sales()
    go_inline(store, notifier, projections=projections)
    orders = Orders(bus)
    await orders.place("o1", "ann")
    placed_at = await store.head_position()
    await orders.cancel("o1")
    cancelled_at = await store.head_position()

    # The append committed; daily sales was rolled back to before the cancellation (its
    # checkpoint and its rows), the others took it.
    assert orders.accepted == 2
    assert cancelled_at > placed_at
    assert await checkpoint_positions(engine) == {
        "order_views": cancelled_at,
        "customer_summaries": cancelled_at,
        "daily_sales": placed_at,
    }
    async with engine.connect() as conn:
        (cancelled,) = (await conn.execute(sa.select(daily_sales.c.orders_cancelled))).one()
    assert cancelled == 0

    # The projector takes it from its checkpoint, meets the failure and records it.
    projector = Projector(engine, projections, notifier, batch_size=50)
    with pytest.raises(ProjectionFailed):
        await projector.catch_up("daily_sales")
    assert (await checkpoint_states(engine))["daily_sales"] == ("failed", cancelled_at)

    # Later appends: still inline for the others; daily sales waits for the projector.
    await orders.place("o2", "bob")
    head = await store.head_position()
    assert await checkpoint_positions(engine) == {
        "order_views": head,
        "customer_summaries": head,
        "daily_sales": placed_at,
    }

    # Fixed (a deploy of the healthy code): the projector catches up, then inline resumes.
    fixed = all_projections()
    await Projector(engine, fixed, notifier).catch_up("daily_sales")
    go_inline(store, notifier, projections=fixed)
    await orders.place("o3", "cid")
    head = await store.head_position()
    assert await checkpoint_positions(engine) == dict.fromkeys(PROJECTION_NAMES, head)
    assert await dump_read_models(engine) == await dump_after_full_rebuild(engine)


async def test_a_poisoned_event_is_left_to_the_projector_by_the_projections_that_handle_it(
    engine: AsyncEngine, store: EventStore, bus: CommandBus, notifier: InProcessNotifier
) -> None:
    go_inline(store, notifier)
    orders = Orders(bus)
    await orders.place("o1", "ann")
    before = await store.head_position()
    # OrderPaid that cannot be decoded (no amount), appended by something other than a
    # command handler: the append commits; customer summaries and daily sales fold
    # OrderPaid and leave it; order views folds every event, so it leaves it too.
    poisoned = NewEvent("OrderPaid", 1, {"order_id": "o1"}, {})
    result = await store.append("order-o1", [poisoned], StreamState.ANY)
    assert result.position > before
    assert await checkpoint_positions(engine) == dict.fromkeys(PROJECTION_NAMES, before)

    projector = Projector(engine, all_projections(), notifier, batch_size=50)
    for name in PROJECTION_NAMES:
        with pytest.raises(ProjectionFailed):
            await projector.catch_up(name)
    states = await checkpoint_states(engine)
    assert states == dict.fromkeys(PROJECTION_NAMES, ("failed", result.position))


async def test_an_event_type_a_projection_ignores_does_not_stop_it_inline(
    engine: AsyncEngine, store: EventStore, bus: CommandBus, notifier: InProcessNotifier
) -> None:
    go_inline(store, notifier, {"customer_summaries", "daily_sales"})
    orders = Orders(bus)
    await orders.place("o1", "ann")
    await orders.readdress("o1")  # neither of them handles ShippingAddressChanged
    head = await store.head_position()
    positions = await checkpoint_positions(engine)
    assert positions["customer_summaries"] == positions["daily_sales"] == head


# --- hand-over ----------------------------------------------------------------------------


async def test_after_a_restart_with_the_projector_behind_inline_waits_until_it_caught_up(
    engine: AsyncEngine, store: EventStore, bus: CommandBus, notifier: InProcessNotifier
) -> None:
    # Before the restart: async only, and the projector never ran (it was behind).
    orders = Orders(bus)
    for n in range(5):
        await orders.place(f"o{n}", "ann")
    await orders.pay("o1")
    behind = await store.head_position()

    # After it: inline, but every checkpoint is behind the head, so inline leaves it.
    go_inline(store, notifier)
    await orders.cancel("o2")
    assert await checkpoint_positions(engine) == dict.fromkeys(PROJECTION_NAMES, 0)

    projector = Projector(engine, all_projections(), notifier, batch_size=2)
    await catch_up_all(projector)
    head = await store.head_position()
    assert head > behind
    assert await checkpoint_positions(engine) == dict.fromkeys(PROJECTION_NAMES, head)

    # Caught up: the next append is projected inline again, with no projector running.
    await orders.ship("o1")
    assert await checkpoint_positions(engine) == dict.fromkeys(
        PROJECTION_NAMES, await store.head_position()
    )
    assert await dump_read_models(engine) == await dump_after_full_rebuild(engine)


# On PostgreSQL the writer and the projector exclude each other by row locks, which this
# races; on SQLite they take turns on the write lock.
@pytest.mark.timeout(300)
async def test_inline_and_a_running_projector_hand_over_under_load_exactly_once(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    notifier: InProcessNotifier,
    waiter: CheckpointWaiter,
) -> None:
    orders = Orders(bus)
    for n in range(40):  # a backlog the projector is behind on
        await orders.place(f"b{n}", f"c{n % 3}")
    go_inline(store, notifier)
    projector = Projector(engine, all_projections(), notifier, batch_size=7, poll_interval=0.05)
    store.on_append(projector.wake)
    await projector.start()
    try:
        # Appends race the projector's passes until it caught up and inline takes over.
        for n in range(30):
            await asyncio.gather(
                orders.place(f"n{n}", f"c{n % 3}"),
                orders.pay(f"b{n}"),
                orders.cancel(f"b{n + 1}"),
                orders.readdress(f"n{n - 1}"),
            )
        assert await waiter.wait_for(await store.head_position(), within=30)
    finally:
        await projector.stop()
    await orders.place("last", "c0")  # with no projector: inline has taken over
    assert await checkpoint_positions(engine) == dict.fromkeys(
        PROJECTION_NAMES, await store.head_position()
    )
    assert await dump_read_models(engine) == await dump_after_full_rebuild(engine)


# PostgreSQL: there the projector holds its checkpoint rows by row locks during a pass.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_append_that_meets_the_projector_mid_pass_waits_for_it_and_stays_inline(
    engine: AsyncEngine, store: EventStore, bus: CommandBus, notifier: InProcessNotifier
) -> None:
    go_inline(store, notifier)
    orders = Orders(bus)
    await orders.place("o1", "ann")
    async with write_transaction(engine) as held:  # as a projector's pass holds them
        await held.execute(sa.select(checkpoints.c.name).with_for_update())
        placing = asyncio.create_task(orders.place("o2", "ann"))
        await until_waiting_for_a_lock(engine, placing)
    await placing  # the pass committed; the append went on

    # Inline kept the projections: no projector had to be woken for them.
    assert await checkpoint_positions(engine) == dict.fromkeys(
        PROJECTION_NAMES, await store.head_position()
    )


# --- versions -------------------------------------------------------------------------------


async def test_inline_feeds_the_active_version_while_a_new_one_is_built_then_the_new_one(
    engine: AsyncEngine, store: EventStore, bus: CommandBus, notifier: InProcessNotifier
) -> None:
    go_inline(store, notifier)
    orders = Orders(bus)
    await orders.place("o1", "ann")
    builder = Builder(engine, all_projections(), notifier, batch_size=1000)
    number, _ = await start_build(engine, OrderViews(), builder)

    await orders.place("o2", "ann")  # while version 2 is being built
    head = await store.head_position()
    assert (await checkpoint_positions(engine))["order_views"] == head  # the active one
    v2 = table_at(order_views, number)
    async with engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(v2))).scalar() == 0

    await builder.build([("order_views", number)])  # catches up and switches
    await orders.place("o3", "ann")  # inline again, into the version now active
    head = await store.head_position()
    assert (await checkpoint_positions(engine))["order_views"] == head
    async with engine.connect() as conn:
        ids = set((await conn.scalars(sa.select(v2.c.order_id))).all())
    assert ids == {"o1", "o2", "o3"}
    assert await dump_read_models(engine) == await dump_after_full_rebuild(engine)
