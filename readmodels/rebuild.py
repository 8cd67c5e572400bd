"""Rebuild a projection from the first event: empty its tables, reset its checkpoint to 0,
replay everything in large batches. State is "rebuilding" until it has caught up."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.db import write_transaction
from readmodels.notifier import Notifier
from readmodels.projection import Projection
from readmodels.projector import LIVE, REBUILDING, Projector, ensure_checkpoints
from readmodels.tables import checkpoints

Progress = Callable[[int, int], None]  # (position reached, head position)


async def rebuild(
    engine: AsyncEngine,
    projection: Projection,
    notifier: Notifier,
    *,
    batch_size: int = 5000,
    progress: Progress | None = None,
) -> int:
    """Returns how many events were replayed."""
    await ensure_checkpoints(engine, [projection.name])
    async with write_transaction(engine) as conn:
        # Wait for (rather than skip) a projector that holds the projection mid-batch.
        await conn.execute(
            sa.select(checkpoints.c.position)
            .where(checkpoints.c.name == projection.name)
            .with_for_update()
        )
        for table in projection.tables:
            await conn.execute(table.delete())
        await _set(conn, projection.name, position=0, state=REBUILDING)
        head = int(await conn.scalar(sa.text("SELECT max(position) FROM events")) or 0)
    projector = Projector(engine, [projection], notifier, batch_size=batch_size)
    replayed = 0
    while applied := await projector.advance(projection, batch_size):
        replayed += applied
        if progress is not None:
            progress(replayed, head)
    async with write_transaction(engine) as conn:
        await _set(conn, projection.name, state=LIVE)
    return replayed


async def _set(conn: AsyncConnection, name: str, **values: object) -> None:
    await conn.execute(
        checkpoints.update()
        .where(checkpoints.c.name == name)
        .values(**values, updated_at=datetime.now(UTC))
    )
