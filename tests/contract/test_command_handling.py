"""Commands through the bus, against the real event store on both databases."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain import commands
from domain.bus import CommandBus, build_bus
from domain.commands import Command, order_id_for
from domain.errors import (
    CommandIdReused,
    OrderNotFound,
    RuleViolated,
    UnknownCommand,
    VersionConflict,
)
from domain.eventstore.repository import OrderRepository, order_id_of, stream_id
from domain.eventstore.store import (
    AppendResult,
    CommandRecord,
    EventStore,
    ExpectedVersion,
    NewEvent,
)
from domain.eventstore.tables import events
from domain.handlers import HandlerContext
from domain.order import OrderStatus
from domain.stream_locks import StreamLocks
from domain.values import Address, OrderLine
from tests.support.factories import ADDRESS, place_order

NEW_ADDRESS = Address(line1="2 Side St", city="Shelbyville", postal_code="54321", country="US")


async def test_placing_an_order_appends_order_placed(bus: CommandBus, store: EventStore) -> None:
    command = place_order()

    result = await bus.dispatch(command)

    assert (result.order_id, result.version, result.command_id) == (
        command.order_id,
        1,
        command.command_id,
    )
    (recorded,) = await store.read_stream(stream_id(command.order_id))
    assert recorded.event_type == "OrderPlaced"
    assert recorded.position == result.position
    assert recorded.metadata["command_id"] == command.command_id
    assert recorded.metadata["causation_id"] == command.command_id
    assert recorded.metadata["correlation_id"] == command.command_id


async def test_decimal_money_survives_the_database(bus: CommandBus, store: EventStore) -> None:
    lines = (OrderLine("A", 3, Decimal("0.10")), OrderLine("B", 7, Decimal("19.99")))
    command = place_order(lines=lines)
    await bus.dispatch(command)

    order = await OrderRepository(store).load(command.order_id)
    assert order.total == Decimal("140.23")
    assert [line.unit_price for line in order.lines] == [Decimal("0.10"), Decimal("19.99")]
    (recorded,) = await store.read_stream(stream_id(command.order_id))
    assert recorded.data["total"] == "140.23"


async def test_an_order_goes_through_its_whole_life(bus: CommandBus, store: EventStore) -> None:
    placed = await bus.dispatch(place := place_order())
    oid = place.order_id
    await bus.dispatch(commands.ChangeShippingAddress(order_id=oid, shipping_address=NEW_ADDRESS))
    await bus.dispatch(commands.PayOrder(order_id=oid, amount=Decimal("40.08")))
    shipped = await bus.dispatch(
        commands.ShipOrder(order_id=oid, carrier="UPS", tracking_number="1Z999")
    )

    order = await OrderRepository(store).load(oid)
    assert order.status is OrderStatus.SHIPPED
    assert order.shipping_address == NEW_ADDRESS
    assert shipped.version == 4
    assert shipped.position > placed.position


async def test_a_broken_rule_leaves_the_store_untouched(bus: CommandBus, store: EventStore) -> None:
    await bus.dispatch(place := place_order())
    head = await store.head_position()

    with pytest.raises(RuleViolated) as error:
        await bus.dispatch(commands.PayOrder(order_id=place.order_id, amount=Decimal("1.00")))
    with pytest.raises(RuleViolated):
        await bus.dispatch(place_order(lines=()))

    assert error.value.rule == "payment_equals_total"
    assert await store.head_position() == head


async def test_commands_on_a_missing_order_are_refused(bus: CommandBus, store: EventStore) -> None:
    with pytest.raises(OrderNotFound):
        await bus.dispatch(commands.CancelOrder(order_id="nope", reason="x"))
    assert await store.head_position() == 0


async def test_an_unknown_command_is_a_typed_error(bus: CommandBus) -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class RefundOrder(Command):
        pass

    with pytest.raises(UnknownCommand, match="RefundOrder"):
        await bus.dispatch(RefundOrder(order_id="o-1"))


async def test_sending_a_command_again_returns_its_first_result(
    bus: CommandBus, store: EventStore
) -> None:
    command = place_order()
    first = await bus.dispatch(command)
    pay = commands.PayOrder(order_id=command.order_id, amount=Decimal("40.08"))
    paid = await bus.dispatch(pay)
    head = await store.head_position()

    again = await bus.dispatch(command)
    paid_again = await bus.dispatch(pay)

    assert (again.version, again.position, again.duplicate) == (first.version, first.position, True)
    assert (paid_again.version, paid_again.position) == (paid.version, paid.position)
    assert await store.head_position() == head


async def test_a_place_order_without_order_id_is_idempotent_by_command_id(
    bus: CommandBus, store: EventStore
) -> None:
    # The edge derives the order id from the command id, so a retry names the same order.
    first = await bus.dispatch(place_order(order_id=order_id_for("cmd-7"), command_id="cmd-7"))
    again = await bus.dispatch(place_order(order_id=order_id_for("cmd-7"), command_id="cmd-7"))
    assert again.order_id == first.order_id
    assert len(await store.read_all()) == 1


async def test_a_command_id_reused_for_another_command_is_refused(
    bus: CommandBus, store: EventStore
) -> None:
    await bus.dispatch(place_order(command_id="cmd-1"))
    with pytest.raises(CommandIdReused):
        await bus.dispatch(place_order(command_id="cmd-1"))
    assert len(await store.read_all()) == 1


async def test_concurrent_retries_of_one_command_append_once(
    bus: CommandBus, store: EventStore
) -> None:
    command = place_order()
    results = await asyncio.gather(*(bus.dispatch(command) for _ in range(8)))
    assert {(r.version, r.position) for r in results} == {(1, results[0].position)}
    assert len(await store.read_all()) == 1


async def test_a_stale_expected_version_is_returned_to_the_caller(
    bus: CommandBus, store: EventStore
) -> None:
    await bus.dispatch(place := place_order())
    await bus.dispatch(
        commands.ChangeShippingAddress(order_id=place.order_id, shipping_address=NEW_ADDRESS)
    )

    with pytest.raises(VersionConflict) as conflict:
        await bus.dispatch(
            commands.CancelOrder(order_id=place.order_id, reason="x", expected_version=1)
        )
    assert (conflict.value.expected, conflict.value.actual) == (1, 2)
    assert len(await store.read_all()) == 2


class RacingStore(EventStore):
    """The real store with a rival writer that appends to the same stream just before each of
    the next ``races`` appends: what a concurrent request does in production."""

    def __init__(self, engine: AsyncEngine, races: int) -> None:
        super().__init__(engine)
        self.races = races
        self.attempts = 0

    async def append(
        self,
        stream: str,
        new_events: Sequence[NewEvent],
        expected_version: ExpectedVersion,
        command: CommandRecord | None = None,
    ) -> AppendResult:
        self.attempts += 1
        if self.races > 0:
            self.races -= 1
            rival = NewEvent(new_events[0].event_type, 1, _address_change(stream), {})
            await super().append(stream, [rival], expected_version)
        return await super().append(stream, new_events, expected_version, command)


def _address_change(stream: str) -> dict[str, object]:
    return {
        "order_id": order_id_of(stream),
        "occurred_at": "2026-11-22T00:00:00+00:00",
        "shipping_address": dataclasses.asdict(ADDRESS),
    }


async def _placed_on(
    engine: AsyncEngine, races: int, settle_seconds: float = 10.0
) -> tuple[CommandBus, RacingStore, str]:
    racing = RacingStore(engine, races=0)
    bus = build_bus(racing, HandlerContext(racing, settle_seconds=settle_seconds))
    await bus.dispatch(place := place_order())
    racing.races, racing.attempts = races, 0
    return bus, racing, place.order_id


async def test_a_lost_race_is_decided_again_on_fresh_state(engine: AsyncEngine) -> None:
    bus, racing, oid = await _placed_on(engine, races=2)

    result = await bus.dispatch(
        commands.ChangeShippingAddress(order_id=oid, shipping_address=NEW_ADDRESS)
    )

    assert racing.attempts == 3
    assert result.version == 4  # placed, two rival changes, then ours
    assert (await OrderRepository(racing).load(oid)).shipping_address == NEW_ADDRESS


async def test_many_lost_races_are_decided_again_until_they_settle(engine: AsyncEngine) -> None:
    # Not bounded by a small count: twelve races in a row still end in acceptance.
    bus, racing, oid = await _placed_on(engine, races=12)

    result = await bus.dispatch(
        commands.ChangeShippingAddress(order_id=oid, shipping_address=NEW_ADDRESS)
    )

    assert racing.attempts == 13
    assert result.version == 14


async def test_retrying_a_lost_race_is_bounded_in_time(engine: AsyncEngine) -> None:
    bus, racing, oid = await _placed_on(engine, races=1_000_000, settle_seconds=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(VersionConflict):
        await bus.dispatch(
            commands.ChangeShippingAddress(order_id=oid, shipping_address=NEW_ADDRESS)
        )
    assert 0.3 <= loop.time() - started < 10
    assert racing.attempts > 1


async def test_concurrent_unconditional_commands_on_one_order_are_all_accepted(
    bus: CommandBus, store: EventStore
) -> None:
    await bus.dispatch(place := place_order())
    changes = [
        commands.ChangeShippingAddress(
            order_id=place.order_id,
            shipping_address=dataclasses.replace(NEW_ADDRESS, line1=f"{n} Side St"),
        )
        for n in range(32)
    ]

    results = await asyncio.gather(*(bus.dispatch(c) for c in changes))

    # No VersionConflict nobody asked for: every change is accepted, one version each.
    assert sorted(r.version for r in results) == list(range(2, 34))
    assert len(await store.read_stream(stream_id(place.order_id))) == 33


async def test_concurrent_conditional_commands_on_one_order_let_exactly_one_win(
    bus: CommandBus, store: EventStore
) -> None:
    await bus.dispatch(place := place_order())
    changes = [
        commands.ChangeShippingAddress(
            order_id=place.order_id, shipping_address=NEW_ADDRESS, expected_version=1
        )
        for _ in range(8)
    ]

    outcomes = await asyncio.gather(*(bus.dispatch(c) for c in changes), return_exceptions=True)

    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert sum(isinstance(o, VersionConflict) for o in outcomes) == 7


async def test_a_lost_race_with_an_expected_version_is_not_retried(engine: AsyncEngine) -> None:
    bus, racing, oid = await _placed_on(engine, races=1)

    with pytest.raises(VersionConflict):
        await bus.dispatch(
            commands.ChangeShippingAddress(
                order_id=oid, shipping_address=NEW_ADDRESS, expected_version=1
            )
        )
    assert racing.attempts == 1


async def test_a_stored_v1_order_placed_is_upcast_when_loaded(
    engine: AsyncEngine, store: EventStore, bus: CommandBus
) -> None:
    v1 = {
        "order_id": "old-1",
        "occurred_at": "2024-03-01T10:00:00+00:00",
        "customer_id": "c-1",
        "lines": [{"sku": "A", "quantity": 2, "unit_price": "5.00"}],
        "shipping_address": "1 Old Road, Oldtown, 99999, GB",
        "total": "10.00",
    }
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(events).values(
                stream_id=stream_id("old-1"),
                stream_version=1,
                event_type="OrderPlaced",
                schema_version=1,
                data=v1,
                meta={},
                recorded_at=datetime(2024, 3, 1, tzinfo=UTC),
            )
        )

    order = await OrderRepository(store).load("old-1")
    assert order.shipping_address == Address(
        line1="1 Old Road", city="Oldtown", postal_code="99999", country="GB"
    )
    paid = await bus.dispatch(commands.PayOrder(order_id="old-1", amount=Decimal("10")))
    assert paid.version == 2


async def test_placing_an_existing_order_again_is_refused(
    bus: CommandBus, store: EventStore
) -> None:
    await bus.dispatch(first := place_order())
    # Placing skips loading (optimistic creation); the conflict must still end in the rule.
    with pytest.raises(RuleViolated) as error:
        await bus.dispatch(place_order(order_id=first.order_id))
    assert error.value.rule == "order_already_placed"
    assert len(await store.read_all()) == 1


async def test_stream_locks_serialize_one_stream_and_are_freed_when_idle() -> None:
    locks = StreamLocks()
    inside: list[str] = []
    overlaps: list[str] = []

    async def hold(stream: str) -> None:
        async with locks.hold(stream):
            if stream in inside:
                overlaps.append(stream)
            inside.append(stream)
            await asyncio.sleep(0)  # let the others try to get in
            inside.remove(stream)

    await asyncio.gather(*(hold(f"order-{n % 3}") for n in range(30)))

    assert overlaps == []
    assert len(locks) == 0  # a process that touched many orders keeps no lock for any


class CountingStore(EventStore):
    """The real store, counting the stream reads (an aggregate's loads)."""

    reads = 0

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[Any]:
        self.reads += 1
        return await super().read_stream(stream_id, from_version)


def _process(engine: AsyncEngine) -> tuple[CommandBus, CountingStore]:
    """A bus as one API process has it: its own handlers' memory of recent orders."""
    store = CountingStore(engine)
    return build_bus(store, HandlerContext(store)), store


async def test_an_order_this_process_just_wrote_is_decided_on_without_reading_it_back(
    engine: AsyncEngine,
) -> None:
    bus, store = _process(engine)
    await bus.dispatch(place := place_order())
    oid = place.order_id
    await bus.dispatch(commands.ChangeShippingAddress(order_id=oid, shipping_address=NEW_ADDRESS))
    await bus.dispatch(commands.PayOrder(order_id=oid, amount=Decimal("40.08")))
    shipped = await bus.dispatch(
        commands.ShipOrder(order_id=oid, carrier="UPS", tracking_number="1")
    )

    assert store.reads == 0
    assert shipped.version == 4
    order = await OrderRepository(store).load(oid)
    assert (order.status, order.shipping_address) == (OrderStatus.SHIPPED, NEW_ADDRESS)


async def test_what_another_process_appended_since_is_never_missed(engine: AsyncEngine) -> None:
    here, _ = _process(engine)
    there, _ = _process(engine)
    await here.dispatch(place := place_order())  # here remembers it placed
    oid = place.order_id
    await there.dispatch(commands.PayOrder(order_id=oid, amount=Decimal("40.08")))

    # Here, the order still looks unpaid, which would refuse shipping: the refusal is made
    # again on the stored order, which ships.
    shipped = await here.dispatch(
        commands.ShipOrder(order_id=oid, carrier="UPS", tracking_number="1")
    )
    assert shipped.version == 3

    # There, it still looks paid, which allows cancelling: the append expects that version,
    # so the cancel is decided again on the stored order, which is shipped.
    with pytest.raises(RuleViolated) as error:
        await there.dispatch(commands.CancelOrder(order_id=oid, reason="too late"))
    assert error.value.rule == "cancellable_until_shipped"
    assert len(await EventStore(engine).read_stream(stream_id(oid))) == 3


async def test_an_expected_version_is_checked_against_the_stored_order(engine: AsyncEngine) -> None:
    here, _ = _process(engine)
    there, _ = _process(engine)
    await here.dispatch(place := place_order())  # here remembers version 1
    oid = place.order_id
    await there.dispatch(commands.ChangeShippingAddress(order_id=oid, shipping_address=NEW_ADDRESS))

    paid = await here.dispatch(
        commands.PayOrder(order_id=oid, amount=Decimal("40.08"), expected_version=2)
    )
    assert paid.version == 3
    with pytest.raises(VersionConflict):
        await there.dispatch(
            commands.ShipOrder(order_id=oid, carrier="UPS", tracking_number="1", expected_version=2)
        )


async def test_only_the_most_recently_used_orders_are_remembered(engine: AsyncEngine) -> None:
    bus, store = _process(engine)
    placed = [(await bus.dispatch(place_order())).order_id for _ in range(3)]
    orders = OrderRepository(store, remembered=2)
    for oid in placed:
        await orders.load(oid)
    assert orders.recall(placed[0]) is None
    assert [orders.recall(oid) is not None for oid in placed[1:]] == [True, True]
