"""The integration relay against real JetStream, on SQLite and PostgreSQL: every committed
event in the stream exactly once, in per-order order, whatever fails and wherever it dies."""

from __future__ import annotations

import asyncio
import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.bus import CommandBus, build_bus
from domain.commands import PayOrder, ShipOrder
from domain.errors import RuleViolated, VersionConflict
from domain.eventstore.engines import create_engine
from domain.eventstore.repository import order_id_of
from domain.eventstore.store import EventStore, StreamState
from integration.consumer import InboxConsumer
from integration.contract import export_json_schema, subject_token
from integration.relay import FAILED, LIVE, RELAY_NAME
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.queries import ReadModelQueries
from readmodels.waiting import CheckpointWaiter
from tests.support.factories import HoldNextInsert, new_event, place_order
from tests.support.jetstream import StreamUnderTest, own_nats_server, stored_messages
from tests.support.relay_checks import (
    DEADLINE,
    SCHEMA_FILE,
    assert_exactly_once_in_order,
    make_relay,
    many_orders,
    relay_subprocess,
)


def test_the_committed_json_schema_is_the_contract_the_code_publishes() -> None:
    assert SCHEMA_FILE.read_text() == export_json_schema(), (
        "integration/orders.v1.schema.json is out of date: a change to the public contract"
        " needs a new version (orders.v2) or, if it is additive, a regenerated file:"
        " python -m integration.contract > integration/orders.v1.schema.json"
    )


async def test_every_committed_event_is_published_exactly_once_and_refusals_publish_nothing(
    engine: AsyncEngine, store: EventStore, bus: CommandBus, jetstream: StreamUnderTest
) -> None:
    head = await many_orders(bus, orders=12)
    placed = await bus.dispatch(place_order())
    with pytest.raises(RuleViolated):  # refused by the aggregate: nothing appended
        await bus.dispatch(PayOrder(order_id=placed.order_id, amount=Decimal("1.00")))
    with pytest.raises(VersionConflict):
        await bus.dispatch(
            ShipOrder(
                order_id=placed.order_id, carrier="X", tracking_number="1", expected_version=7
            )
        )
    relay = make_relay(engine, jetstream, batch_size=7)
    try:
        published = await relay.drain()
        assert published == max(head, placed.position) == 12 * 4 + 1
        assert await relay.drain() == 0  # nothing new: nothing sent again
        status = await relay.status()
    finally:
        await relay.stop()

    stored = await stored_messages(jetstream.url, jetstream.name)
    await assert_exactly_once_in_order(store, stored)
    assert (status.position, status.lag, status.published, status.duplicates) == (49, 0, 49, 0)
    first = stored[0]
    assert first.subject == f"{jetstream.prefix}.v1.OrderPlaced.{first.body['orderId']}"
    assert first.headers["Orders-Correlation-Id"] == first.body["correlationId"] != ""
    assert first.body["data"]["total"] == "40.08"  # money as a decimal string


async def test_the_relay_runs_in_the_background_and_can_be_waited_for(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    notifier: InProcessNotifier,
    jetstream: StreamUnderTest,
) -> None:
    relay = make_relay(engine, jetstream, notifier)
    store.on_append(relay.wake)
    waiter = CheckpointWaiter(engine, notifier, [RELAY_NAME])
    await relay.start()
    try:
        head = await many_orders(bus, orders=10)
        assert await waiter.wait_for(head, within=DEADLINE)  # caughtUp(projections: [integration])
        status = await relay.status()
    finally:
        await relay.stop()
    assert (status.state, status.lag, status.lag_seconds) == (LIVE, 0, 0.0)
    await assert_exactly_once_in_order(store, await stored_messages(jetstream.url, jetstream.name))


async def test_a_writer_committing_late_is_never_skipped(
    engine: AsyncEngine, store: EventStore, jetstream: StreamUnderTest
) -> None:
    hold = HoldNextInsert()
    held_store = EventStore(engine, insert=hold)
    held_bus, bus = build_bus(held_store), build_bus(store)
    relay = make_relay(engine, jetstream)
    await relay.drain()  # connected, its checkpoint row in place
    held = asyncio.create_task(held_bus.dispatch(place_order(customer_id="held")))
    await hold.inside.wait()
    later = [asyncio.create_task(bus.dispatch(place_order())) for _ in range(5)]
    # Give the later writers every chance to commit ahead of the held one; had they, the
    # relay would checkpoint past the held event's position and never publish it.
    await asyncio.wait(later, timeout=0.5)
    try:
        await relay.drain()
        hold.release.set()
        await asyncio.gather(held, *later)
        await relay.drain()
    finally:
        await relay.stop()
    stored = await stored_messages(jetstream.url, jetstream.name)
    assert len(stored) == 6
    await assert_exactly_once_in_order(store, stored)


@pytest.mark.parametrize(
    ("step", "resent"),
    [("read", 0), ("published", 10), ("checkpointed", 0)],
)
async def test_a_relay_killed_at_any_step_leaves_each_event_in_the_stream_once(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    database_url: str,
    jetstream: StreamUnderTest,
    step: str,
    resent: int,
) -> None:
    head = await many_orders(bus, orders=6)  # 24 events; batches of 10
    async with relay_subprocess(database_url, jetstream, step, "10") as process:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), DEADLINE)
        assert line.decode().strip() == step
        process.send_signal(signal.SIGKILL)
        await process.wait()
    before = len(await stored_messages(jetstream.url, jetstream.name))
    assert before == (0 if step == "read" else 10)

    relay = make_relay(engine, jetstream, batch_size=10)
    try:
        await relay.drain()
        status = await relay.status()
    finally:
        await relay.stop()
    # The restarted relay re-sent exactly the batch whose checkpoint the kill lost, and the
    # broker said so in the PubAcks; the stream holds one message per event.
    assert status.duplicates == resent
    assert status.published == head - before
    assert status.position == head
    stored = await stored_messages(jetstream.url, jetstream.name)
    assert len(stored) == head
    await assert_exactly_once_in_order(store, stored)


async def test_commands_succeed_while_the_broker_is_down_and_the_backlog_drains_after(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    notifier: InProcessNotifier,
    jetstream: StreamUnderTest,
    tmp_path: Path,
) -> None:
    waiter = CheckpointWaiter(engine, notifier, [RELAY_NAME])
    async with own_nats_server(tmp_path / "nats") as server:
        relay = make_relay(engine, jetstream, notifier, url=server.url, batch_size=20)
        store.on_append(relay.wake)
        await relay.start()
        try:
            head = await many_orders(bus, orders=10)
            assert await waiter.wait_for(head, within=DEADLINE)

            await server.stop()
            writers = asyncio.create_task(many_orders(bus, orders=20))
            async with asyncio.timeout(DEADLINE):  # until the relay says it is held back
                while True:
                    if (await relay.status()).state == FAILED:
                        break
                    await asyncio.sleep(0.05)
            head = await writers  # every command succeeded with the broker away
            status = await relay.status()
            assert status.lag > 0
            assert status.last_error

            await server.start()
            assert await waiter.wait_for(head, within=DEADLINE)
            status = await relay.status()
        finally:
            await relay.stop()
        assert (status.state, status.lag) == (LIVE, 0)
        stored = await stored_messages(server.url, jetstream.name)
    await assert_exactly_once_in_order(store, stored)
    assert len(stored) == 30 * 4


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_relay_processes_take_turns_and_publish_each_event_once_in_order(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    database_url: str,
    jetstream: StreamUnderTest,
) -> None:
    head = await many_orders(bus, orders=5)  # a backlog when they start, and more meanwhile
    async with (
        relay_subprocess(database_url, jetstream, "relay", module="graph.runtime.cli") as first,
        relay_subprocess(database_url, jetstream, "relay", module="graph.runtime.cli") as second,
    ):
        for process in (first, second):  # both running before the writes they share
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), DEADLINE)
            assert line.decode().strip() == "relay running"
        head = await many_orders(bus, orders=30)
        relay = make_relay(engine, jetstream)  # only to read the shared checkpoint
        async with asyncio.timeout(DEADLINE):
            while True:  # the relays are other processes: poll the shared checkpoint
                if (await relay.status()).position >= head:
                    break
                await asyncio.sleep(0.05)
        reports = []
        for process in (first, second):
            process.send_signal(signal.SIGTERM)
            assert process.stdout is not None
            reports.append((await asyncio.wait_for(process.stdout.read(), DEADLINE)).decode())
            assert await process.wait() == 0
    published = [int(r.split("published ")[1].split(",")[0]) for r in reports]
    duplicates = [int(r.split("duplicates ")[1]) for r in reports]
    # Each batch was published by exactly one of them: no PubAck ever said "duplicate".
    assert sum(published) == head == 35 * 4, reports
    assert duplicates == [0, 0], reports
    stored = await stored_messages(jetstream.url, jetstream.name)
    await assert_exactly_once_in_order(store, stored)


class AcksLostAtFirst(InboxConsumer):
    """The reference consumer, dying (as far as the broker can tell) before its first acks:
    the messages were handled and their inbox rows committed, but no ack reached JetStream."""

    lose = 2

    async def ack(self, message: Msg) -> None:
        if self.lose:
            self.lose -= 1
            return
        await super().ack(message)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_reference_consumer_handles_each_event_once_despite_redelivery(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    jetstream: StreamUnderTest,
    tmp_path: Path,
) -> None:
    head = await many_orders(bus, orders=5)
    relay = make_relay(engine, jetstream)
    try:
        await relay.drain()
    finally:
        await relay.stop()

    handled: list[tuple[str, int]] = []

    async def handle(_conn: AsyncConnection, message: dict[str, Any]) -> None:
        handled.append((message["orderId"], message["orderVersion"]))

    own_database = create_engine(f"sqlite:///{tmp_path / 'shipping.db'}")
    consumer = AcksLostAtFirst(
        own_database,
        handle,
        url=jetstream.url,
        stream=jetstream.name,
        subjects=f"{jetstream.prefix}.v1.>",
        durable="shipping",
        ack_wait=1.0,  # the lost acks come back as redeliveries after a second each
    )
    await consumer.start()
    try:
        async with asyncio.timeout(DEADLINE):
            while consumer.handled < head or consumer.dropped < 2:
                await consumer.poll(wait=2.0)
    finally:
        await consumer.stop()
        await own_database.dispose()
    assert (consumer.handled, consumer.dropped) == (head, 2)
    assert len(handled) == len(set(handled)) == head  # each event handled once
    for order in {o for o, _ in handled}:
        versions = [v for o, v in handled if o == order]
        assert versions == sorted(versions)


def test_order_ids_become_single_subject_tokens() -> None:
    assert subject_token("3b7d0e4e-5b8e_X") == "3b7d0e4e-5b8e_X"
    assert subject_token("a.b*c >é") == "a~2Eb~2Ac~20~3E~C3~A9"


async def test_an_event_the_contract_cannot_map_stops_the_relay_there_and_says_so(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    queries: ReadModelQueries,
    jetstream: StreamUnderTest,
) -> None:
    for _ in range(3):
        await bus.dispatch(place_order())
    await store.append("mystery-1", [new_event(1, "Mystery")], StreamState.ANY)  # position 4
    after = await bus.dispatch(place_order())
    relay = make_relay(engine, jetstream, batch_size=2)
    await relay.start()
    try:
        async with asyncio.timeout(DEADLINE):
            while True:
                if relay.state == FAILED:
                    break
                await asyncio.sleep(0.05)
        (row,) = await queries.projection_statuses([RELAY_NAME])
    finally:
        await relay.stop()
    assert (row.state, row.error_position) == (FAILED, 4)
    assert row.error is not None
    assert "Mystery at position 4" in row.error
    assert row.position == 2  # the batch holding the culprit (3, 4) is not checkpointed
    stored = await stored_messages(jetstream.url, jetstream.name)
    # Event 3 went out before the culprit was reached (it will be re-sent, a duplicate, once
    # the cause is fixed); nothing after the culprit did.
    published = [int(m.headers["Orders-Order-Version"]) for m in stored]
    assert (len(stored), published) == (3, [1, 1, 1])
    assert after.position == 5
    assert after.order_id not in {m.body["orderId"] for m in stored}


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_second_relay_waits_while_one_holds_a_batch_and_takes_over_when_it_dies(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    database_url: str,
    jetstream: StreamUnderTest,
) -> None:
    head = await many_orders(bus, orders=6)  # 24 events
    second = make_relay(engine, jetstream, batch_size=10)
    try:
        async with relay_subprocess(database_url, jetstream, "published", "10") as first:
            assert first.stdout is not None
            line = await asyncio.wait_for(first.stdout.readline(), DEADLINE)
            assert line.decode().strip() == "published"
            # The first holds its batch (published, not yet checkpointed): the second may
            # not publish anything meanwhile.
            assert await second.drain() == 0
            assert (second.published, second.duplicates) == (0, 0)
            first.send_signal(signal.SIGKILL)
            await first.wait()
        assert await second.drain() == head  # its transaction gone, the second takes over
        status = await second.status()
    finally:
        await second.stop()
    assert (status.position, status.duplicates, status.published) == (head, 10, head - 10)
    stored = await stored_messages(jetstream.url, jetstream.name)
    assert len(stored) == head
    await assert_exactly_once_in_order(store, stored)


async def test_a_stream_deleted_under_the_relay_is_created_again_and_nothing_after_is_lost(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    notifier: InProcessNotifier,
    jetstream: StreamUnderTest,
) -> None:
    relay = make_relay(engine, jetstream, notifier)
    store.on_append(relay.wake)
    waiter = CheckpointWaiter(engine, notifier, [RELAY_NAME])
    await relay.start()
    try:
        first = await many_orders(bus, orders=3)
        assert await waiter.wait_for(first, within=DEADLINE)
        nc = await nats.connect(jetstream.url)
        await nc.jetstream().delete_stream(jetstream.name)  # an operator's mistake
        await nc.close()
        head = await many_orders(bus, orders=3)
        assert await waiter.wait_for(head, within=DEADLINE)
        status = await relay.status()
    finally:
        await relay.stop()
    assert status.last_error is not None
    assert "no JetStream stream answers" in status.last_error  # the refusal, on record
    stored = await stored_messages(jetstream.url, jetstream.name)
    assert len(stored) == head - first == 12  # the three orders written after it, whole
    assert {m.body["orderId"] for m in stored}.isdisjoint(
        {order_id_of(e.stream_id) for e in await store.read_all(limit=first)}
    )
