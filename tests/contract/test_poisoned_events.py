"""A stored event that cannot be decoded stops, visibly, exactly the projections that handle
its type; the others keep going; the log says it once per change, not once per retry."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import CommandBus
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.projector import Projector
from readmodels.queries import ReadModelQueries
from readmodels.registry import all_projections
from readmodels.stall_log import StallLog
from readmodels.tables import checkpoints
from readmodels.waiting import CheckpointWaiter
from tests.support.factories import place_order
from tests.support.read_models import insert_raw_event, statuses_when_settled

TIMEOUT = 20.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_malformed_json_stops_every_projection_visibly(
    engine: AsyncEngine,
    bus: CommandBus,
    notifier: InProcessNotifier,
    queries: ReadModelQueries,
    waiter: CheckpointWaiter,
) -> None:
    before = await bus.dispatch(place_order())
    poisoned = await insert_raw_event(engine, "poisoned", 1, "OrderPlaced", "{not json")
    head = (await bus.dispatch(place_order())).position
    projector = Projector(engine, all_projections(), notifier, max_backoff=0.05)

    await projector.start()
    try:
        found = await statuses_when_settled(queries, waiter, head, set(PROJECTION_NAMES))
    finally:
        await projector.stop()

    for status in found.values():
        assert (status.state, status.position, status.error_position) == (
            "failed",
            before.position,
            poisoned,
        )
        assert status.error is not None
        assert "JSONDecodeError" in status.error
        assert len(status.error) <= 300


async def test_an_undecodable_event_stops_only_the_projections_that_handle_its_type(
    engine: AsyncEngine,
    bus: CommandBus,
    notifier: InProcessNotifier,
    queries: ReadModelQueries,
    waiter: CheckpointWaiter,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="ordergraph.projector")
    placed = await bus.dispatch(place := place_order())
    # A shipping address change without its address: only order views read that type.
    poisoned = await insert_raw_event(
        engine, place.order_id, 2, "ShippingAddressChanged", '{"order_id": "x"}'
    )
    head = (await bus.dispatch(place_order())).position
    projector = Projector(engine, all_projections(), notifier, max_backoff=0.05)

    await projector.start()
    try:
        found = await statuses_when_settled(queries, waiter, head, {"order_views"})
        retried = await _updated_at(engine, "order_views")
        async with asyncio.timeout(TIMEOUT):  # several retries at the same event
            for _ in range(3):
                while await _updated_at(engine, "order_views") == retried:
                    await waiter.wait_for(head + 1, within=0.05)
                retried = await _updated_at(engine, "order_views")
    finally:
        await projector.stop()

    views = found["order_views"]
    assert (views.state, views.position, views.error_position) == (
        "failed",
        placed.position,
        poisoned,
    )
    assert views.error is not None
    assert views.error.startswith("cannot decode the event: ")
    for name in ("customer_summaries", "daily_sales"):
        assert (found[name].state, found[name].position) == ("live", head)
    stopped = [r for r in caplog.records if "order_views stopped" in r.getMessage()]
    assert len(stopped) == 1, [r.getMessage() for r in caplog.records]


async def _updated_at(engine: AsyncEngine, name: str) -> datetime:
    """When the checkpoint row last changed: each retry that fails again records it anew."""
    async with engine.connect() as conn:
        query = sa.select(checkpoints.c.updated_at).where(checkpoints.c.name == name)
        updated_at: datetime = (await conn.execute(query)).scalar_one()
    return updated_at


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_stall_is_logged_at_each_change_and_then_as_a_periodic_reminder(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="test.stalls")
    clock = FakeClock()
    stalls = StallLog(logging.getLogger("test.stalls"), reminder_seconds=60, clock=clock)
    cause = ValueError("boom")

    for clock.now in (0, 1, 2, 30, 59):
        stalls.stalled("daily_sales", "failed at position 7: ValueError: boom", cause)
    clock.now = 61
    stalls.stalled("daily_sales", "failed at position 7: ValueError: boom", cause)
    stalls.stalled("daily_sales", "failed at position 9: ValueError: boom", cause)
    stalls.running("daily_sales")
    stalls.running("daily_sales")

    assert [r.getMessage() for r in caplog.records] == [
        "projection daily_sales stopped: failed at position 7: ValueError: boom",
        "projection daily_sales still stopped: failed at position 7: ValueError: boom",
        "projection daily_sales stopped: failed at position 9: ValueError: boom",
        "projection daily_sales resumed",
    ]
