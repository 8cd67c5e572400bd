"""Look-ups by key on the driver's own connection (readmodels/driver_reads.py), on both
databases: the same rows, values and types as SQLAlchemy gives, and a failed driver read is
read again through SQLAlchemy."""

from __future__ import annotations

from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.access import Actor
from domain.bus import CommandBus
from domain.commands import PayOrder, ShipOrder
from domain.eventstore.engines import create_engine
from readmodels.driver_reads import DriverReads
from readmodels.names import ORDER_VIEWS
from readmodels.projector import Projector
from readmodels.queries import ReadModelQueries, _row_with_version
from readmodels.tables import order_views
from tests.conftest import admin_connect
from tests.support.factories import place_order

STAFF = Actor("sam", frozenset({"staff"}))


async def _shipped_order(bus: CommandBus, projector: Projector) -> str:
    placed = await bus.dispatch(place_order(customer_id="zoe-1"))
    await bus.dispatch(PayOrder(order_id=placed.order_id, amount=Decimal("40.08"), actor=STAFF))
    await bus.dispatch(
        ShipOrder(order_id=placed.order_id, carrier="DHL", tracking_number="Ω-1", actor=STAFF)
    )
    await projector.catch_up(ORDER_VIEWS)
    return placed.order_id


@pytest.mark.parametrize("scoped", [False, True])
async def test_a_driver_read_gives_the_row_sqlalchemy_gives(
    engine: AsyncEngine, bus: CommandBus, projector: Projector, scoped: bool
) -> None:
    order_id = await _shipped_order(bus, projector)
    statement = _row_with_version(order_views, scoped)
    values = {"projection": ORDER_VIEWS, "key": order_id, "scope": "zoe-1" if scoped else None}
    async with engine.connect() as conn:
        expected = (await conn.execute(statement, values)).one()

    reads = DriverReads(engine)
    async with reads.connect() as driver:
        found = await driver.first(statement, values)
        missing = await driver.first(statement, {**values, "key": "no-such-order"})

    assert found._fields == tuple(expected._fields)
    for name, want, got in zip(found._fields, expected, found, strict=True):
        assert (name, got, type(got)) == (name, want, type(want))
    assert found.total == Decimal("40.08")
    assert found.paid_at.tzinfo is not None
    assert missing is not None
    assert missing.matched is None


async def test_a_driver_read_of_a_missing_table_is_answered_through_sqlalchemy(
    engine: AsyncEngine, bus: CommandBus, projector: Projector
) -> None:
    """What SQLAlchemy says (here: the error of a table that is not there) is what a caller
    gets, not the driver's own error."""
    queries = ReadModelQueries(engine)
    columns = (sa.Column(c.name, c.type, primary_key=c.primary_key) for c in order_views.c)
    absent = sa.Table("order_views_absent", sa.MetaData(), *columns)
    with pytest.raises(sa.exc.DBAPIError):
        await queries._by_key(absent, ORDER_VIEWS, "any", None)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_read_on_a_connection_the_server_dropped_is_still_answered(
    engine: AsyncEngine, bus: CommandBus, projector: Projector, database_url: str
) -> None:
    order_id = await _shipped_order(bus, projector)
    own = create_engine(database_url, pool_size=1, max_overflow=0)
    try:
        queries = ReadModelQueries(own)
        assert (await queries.order(order_id)) is not None  # the pool now holds one connection
        async with own.connect() as conn:
            pid = await conn.scalar(sa.text("SELECT pg_backend_pid()"))
        admin = await admin_connect(
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        try:
            # With a timeout it returns once the backend is gone, not when it was signalled.
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        finally:
            await admin.close()

        view = await queries.order(order_id)  # the driver's read fails on the dropped one

        assert view is not None
        assert view.carrier == "DHL"
        assert view.tracking_number == "Ω-1"
        async with own.connect() as conn:
            assert await conn.scalar(sa.text("SELECT pg_backend_pid()")) != pid
    finally:
        await own.dispose()
