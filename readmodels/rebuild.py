"""Rebuild projections from the first event: empty their tables, reset their checkpoints
to 0, replay everything in large batches. State is "rebuilding" until they have caught up.

A failing projection makes the rebuild fail (ProjectionFailed is not raised here: the batch's
error propagates), leaving state "rebuilding" so that nobody mistakes it for complete.

An interrupted rebuild (Ctrl-C, kill -9) leaves state "rebuilding" at the position it reached,
with the tables holding exactly what that checkpoint says: consistent, only behind. Whoever
projects next carries on from there (the projector of `serve` or `project`), and the state turns
"live" once a batch reaches the head; a new ``rebuild`` starts over instead."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
    projections: Sequence[Projection],
    notifier: Notifier,
    *,
    batch_size: int = 5000,
    progress: Progress | None = None,
) -> int:
    """Replay the projections together (each event read and decoded once); returns how many
    events were replayed."""
    names = [p.name for p in projections]
    await ensure_checkpoints(engine, names)
    async with write_transaction(engine) as conn:
        # Wait for (rather than skip) a projector that holds a projection mid-batch.
        await conn.execute(
            sa.select(checkpoints.c.position).where(checkpoints.c.name.in_(names)).with_for_update()
        )
        for projection in projections:
            for table in projection.tables:
                await conn.execute(table.delete())
        await _set(conn, names, position=0, state=REBUILDING)
        head = int(await conn.scalar(sa.text("SELECT max(position) FROM events")) or 0)
    projector = Projector(engine, projections, notifier, batch_size=batch_size)
    replayed = 0
    while applied := await projector.advance_together(projections, batch_size):
        replayed += applied
        if progress is not None:
            progress(replayed, head)
    async with write_transaction(engine) as conn:
        await _set(conn, names, state=LIVE)
    return replayed


INTERRUPTED_NOTE = "rebuild interrupted; the projector resumes it from this position"


async def mark_interrupted(engine: AsyncEngine, names: Sequence[str]) -> dict[str, int]:
    """Say so on the checkpoints of an interrupted rebuild; returns where each one stopped."""
    async with write_transaction(engine) as conn:
        await conn.execute(
            checkpoints.update()
            .where(checkpoints.c.name.in_(names), checkpoints.c.state == REBUILDING)
            .values(error=INTERRUPTED_NOTE, updated_at=datetime.now(UTC))
        )
        rows = await conn.execute(
            sa.select(checkpoints.c.name, checkpoints.c.position).where(
                checkpoints.c.name.in_(names)
            )
        )
        return {row.name: row.position for row in rows}


async def _set(conn: AsyncConnection, names: Sequence[str], **values: object) -> None:
    await conn.execute(
        checkpoints.update()
        .where(checkpoints.c.name.in_(names))
        .values(**values, updated_at=datetime.now(UTC))
    )
