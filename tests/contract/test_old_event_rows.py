"""Events stored by the codec before msgspec (times with "+00:00", json.dumps's spacing and
escapes, an OrderPlaced of schema 1) are read by everything that reads events: the
projector, a rebuild, and the aggregate when a command loads the order. On both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import CommandBus
from domain.commands import PayOrder
from domain.eventstore.repository import stream_id
from domain.eventstore.tables import events
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.projector import Projector
from readmodels.queries import ReadModelQueries
from readmodels.rebuild import rebuild
from readmodels.registry import all_projections
from tests.support.old_rows import OLD_ROWS
from tests.support.read_models import catch_up_all, dump_read_models

# Metadata as the old codec's engine wrote it (json.dumps).
OLD_META = (
    '{"command_id": "c-%d", "causation_id": "c-%d", "actor": {"subject": "sam", "roles":'
    ' ["staff"]}}'
)
# An OrderPlaced of schema 1 (one line of address), as it was stored then.
OLD_V1 = (
    "OrderPlaced",
    1,
    '{"order_id": "o-2", "occurred_at": "2024-03-01T10:00:00+00:00", "customer_id": "c-2",'
    ' "lines": [{"sku": "A", "quantity": 1, "unit_price": "5.00"}], "shipping_address":'
    ' "221B Baker Street, London, NW1 6XE, GB", "total": "5.00"}',
)


async def store_old_row(
    engine: AsyncEngine, order_id: str, version: int, row: tuple[str, int, str], n: int
) -> None:
    """The row exactly as text on SQLite; PostgreSQL's JSONB keeps the values, not the text."""
    event_type, schema_version, text = row
    meta = OLD_META % (n, n)
    sqlite = engine.dialect.name == "sqlite"
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(events).values(
                stream_id=stream_id(order_id),
                stream_version=version,
                event_type=event_type,
                schema_version=schema_version,
                data=sa.literal(text, sa.Text) if sqlite else json.loads(text),
                meta=sa.literal(meta, sa.Text) if sqlite else json.loads(meta),
                recorded_at=datetime(2026, 3, 4, 5, 6, 8, tzinfo=UTC),
            )
        )


async def test_old_rows_are_projected_rebuilt_and_loaded_by_commands(
    engine: AsyncEngine, bus: CommandBus, projector: Projector, queries: ReadModelQueries
) -> None:
    placed, changed, paid, shipped, _ = OLD_ROWS
    for version, row in enumerate([placed, changed, paid, shipped], start=1):
        await store_old_row(engine, "o-1", version, row, version)
    await store_old_row(engine, "o-2", 1, OLD_V1, 5)
    if engine.dialect.name == "sqlite":  # stored as the old text, not re-encoded
        async with engine.connect() as conn:
            first = await conn.scalar(sa.select(sa.cast(events.c.data, sa.Text)).limit(1))
        assert first == placed[2]

    await catch_up_all(projector)

    view = await queries.order("o-1")
    assert view is not None
    assert (view.status, view.total, view.version, view.carrier) == (
        "SHIPPED",
        Decimal("40.08"),
        4,
        "UPS",
    )
    assert view.placed_at == datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
    assert view.shipping_address.city == "Springfield"
    assert [line.line_total for line in view.lines] == [Decimal("39.98"), Decimal("0.10")]
    history = await queries.order_history("o-1")
    assert next((h.command_id, h.subject, h.roles) for h in history) == ("c-1", "sam", ("staff",))
    upcast = await queries.order("o-2")
    assert upcast is not None
    assert upcast.shipping_address.city == "London"
    customer = await queries.customer("c-1")
    assert customer is not None
    assert customer.total_paid == Decimal("40.08")
    projected = await dump_read_models(engine)

    await rebuild(engine, all_projections(), InProcessNotifier(), batch_size=2)
    assert await dump_read_models(engine, dict.fromkeys(PROJECTION_NAMES, 2)) == projected

    # The aggregate reads the old rows too: a command on the upcast order goes through.
    result = await bus.dispatch(PayOrder(order_id="o-2", amount=Decimal("5.00")))
    assert result.version == 2
    async with engine.connect() as conn:
        stored = await conn.scalar(
            sa.select(sa.cast(events.c.data, sa.Text)).where(events.c.position == result.position)
        )
    assert stored is not None
    assert json.loads(stored)["occurred_at"].endswith("Z")
