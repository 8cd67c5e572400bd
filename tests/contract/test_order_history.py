"""The order history (who caused each event), on both databases: fed by the order_views
projection from the events' metadata, and filled by migration 0003 for events stored before
the audit existed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from domain import events
from domain.access import Actor
from domain.bus import CommandBus
from domain.commands import PayOrder
from domain.eventstore import codec
from domain.eventstore.engines import write_transaction
from domain.eventstore.store import EventStore, NewEvent, StreamState
from domain.values import OrderLine
from migrations import alembic_config, upgrade_to_head
from readmodels.projector import Projector
from readmodels.queries import ReadModelQueries
from tests.support.factories import ADDRESS, place_order

STAFF = Actor("sam", frozenset({"staff"}))


async def _downgrade(engine: AsyncEngine, revision: str) -> None:
    def downgrade(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), revision)

    async with write_transaction(engine) as conn:
        await conn.run_sync(downgrade)


async def test_the_history_names_who_caused_each_event(
    bus: CommandBus, projector: Projector, queries: ReadModelQueries
) -> None:
    alice = Actor("alice", frozenset({"customer"}), "alice")
    placed = await bus.dispatch(place_order(customer_id="alice", actor=alice))
    paid = await bus.dispatch(
        PayOrder(order_id=placed.order_id, amount=Decimal("40.08"), actor=STAFF)
    )
    await projector.catch_up("order_views")

    history = await queries.order_history(placed.order_id)
    assert [(h.version, h.event_type, h.subject, h.roles) for h in history] == [
        (1, "OrderPlaced", "alice", ("customer",)),
        (2, "OrderPaid", "sam", ("staff",)),
    ]
    assert history[1].command_id == paid.command_id
    assert history[1].position == paid.position
    assert history[0].recorded_at.tzinfo is not None


async def test_events_stored_before_the_audit_are_in_the_history_without_a_subject(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    projector: Projector,
    queries: ReadModelQueries,
) -> None:
    await _downgrade(engine, "0002")
    try:
        old = events.OrderPlaced(
            order_id="old-1",
            occurred_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            customer_id="carol",
            lines=(OrderLine("SKU-1", 1, Decimal("5.00")),),
            shipping_address=ADDRESS,
            total=Decimal("5.00"),
        )
        # Metadata as it was written before events named who caused them.
        await store.append(
            "order-old-1",
            [NewEvent(*codec.encode(old), {"command_id": "c-old", "causation_id": "c-old"})],
            StreamState.NO_STREAM,
        )
    finally:
        await upgrade_to_head(engine)

    (entry,) = await queries.order_history("old-1")
    assert (entry.event_type, entry.command_id, entry.subject, entry.roles) == (
        "OrderPlaced",
        "c-old",
        None,
        (),
    )

    # The projector then adds what comes next, and replaying the old event changes nothing.
    await bus.dispatch(PayOrder(order_id="old-1", amount=Decimal("5.00"), actor=STAFF))
    await projector.catch_up("order_views")
    history = await queries.order_history("old-1")
    assert [(h.version, h.subject) for h in history] == [(1, None), (2, "sam")]
