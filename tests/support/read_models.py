"""Reading and breaking read models in tests: dumps to compare, catching up, a raw event stored
the way a bug would, and a projection that fails on purpose."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain import events
from domain.eventstore.repository import stream_id
from domain.eventstore.tables import events as events_table
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.projection import Envelope, Projection
from readmodels.projector import Projector
from readmodels.queries import ProjectionStatusView, ReadModelQueries
from readmodels.rebuild import rebuild
from readmodels.registry import all_projections
from readmodels.tables import checkpoints
from readmodels.waiting import CheckpointWaiter


async def catch_up_all(projector: Projector) -> None:
    for name in PROJECTION_NAMES:
        await projector.catch_up(name)


async def dump_read_models(
    engine: AsyncEngine, versions: dict[str, int] | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of each projection's active version (or of the versions given), sorted,
    by its definition's name: two equal dumps mean identical read models."""
    dump: dict[str, list[tuple[Any, ...]]] = {}
    async with engine.connect() as conn:
        active = dict(
            (await conn.execute(sa.select(checkpoints.c.name, checkpoints.c.version))).all()
        )
        for projection in all_projections():
            number = (versions or active).get(projection.name, 1)
            for definition in projection.tables:
                table = projection.at(number).table(definition)
                rows = (await conn.execute(sa.select(table))).all()
                dump[definition.name] = sorted(tuple(map(repr, row)) for row in rows)
    return dump


async def dump_after_full_rebuild(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    await rebuild(engine, all_projections(), InProcessNotifier(), batch_size=1000)
    return await dump_read_models(engine)


TIMEOUT = 20.0  # seconds a test waits for projections to settle


class BrokenOnCancel(Projection):
    """Wraps a real projection; raises on any OrderCancelled while ``broken``."""

    def __init__(self, inner: Projection) -> None:
        self.inner, self.name, self.tables = inner, inner.name, inner.tables
        self.broken = True

    async def apply(self, conn: AsyncConnection, batch: Sequence[Envelope]) -> None:
        if self.broken and any(isinstance(e.event, events.OrderCancelled) for e in batch):
            raise ValueError("cannot handle cancellations")
        await self.inner.apply(conn, batch)


async def insert_raw_event(
    engine: AsyncEngine, order_id: str, version: int, event_type: str, data: str
) -> int:
    """Store an event the way a bug or a hand edit would: no codec, any text at all."""
    async with engine.begin() as conn:
        values = {
            "stream_id": stream_id(order_id),
            "stream_version": version,
            "event_type": event_type,
            "schema_version": 1,
            # SQLite stores the text as it is; PostgreSQL's JSONB only takes valid JSON.
            "data": sa.literal_column(f"'{data}'")
            if engine.dialect.name == "sqlite"
            else json.loads(data),
            "meta": {},
            "recorded_at": datetime.now(UTC),
        }
        result = await conn.execute(
            sa.insert(events_table).values(**values).returning(events_table.c.position)
        )
        return int(result.scalar_one())


async def statuses_when_settled(
    queries: ReadModelQueries, waiter: CheckpointWaiter, head: int, failed: set[str]
) -> dict[str, ProjectionStatusView]:
    """Wait for the healthy projections to reach the head and the others to record failure."""
    healthy = [n for n in PROJECTION_NAMES if n not in failed]
    if healthy:
        assert await waiter.wait_for(head, healthy, within=TIMEOUT)
    async with asyncio.timeout(TIMEOUT):
        while True:
            found = {s.name: s for s in await queries.projection_statuses()}
            if all(found[n].state == "failed" for n in failed):
                return found
            await waiter.wait_for(head + 1, within=0.05)  # a checkpoint change, or a moment
