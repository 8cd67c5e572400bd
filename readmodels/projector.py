"""The projector: tails the event store and feeds each projection, exactly once.

Each projection has its own checkpoint and its own task, so one failing projection never
holds the others back. A batch's read-model writes and its new checkpoint commit in one
transaction: after a crash the batch is either wholly applied and checkpointed, or not at all.
The checkpoint row is locked for the batch (``FOR UPDATE SKIP LOCKED``; on SQLite the writer's
``BEGIN IMMEDIATE``), so projector instances in several processes take turns and never apply a
batch twice.

A projection that raises stops at the failing event and never skips it: the batch is retried
one event at a time to commit everything before the culprit, the culprit's position and error
are recorded as state ``failed``, and it is retried with backoff until the cause is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain import codec
from domain.db import write_transaction
from domain.store import read_after
from readmodels.notifier import Notifier, ProjectionUpdate
from readmodels.projection import Envelope, Projection
from readmodels.tables import checkpoints

log = logging.getLogger("ordergraph.projector")

LIVE, FAILED, REBUILDING = "live", "failed", "rebuilding"


class ProjectionFailed(Exception):
    def __init__(self, projection: str, position: int, cause: BaseException) -> None:
        super().__init__(f"projection {projection} failed at position {position}: {cause!r}")
        self.projection = projection
        self.position = position
        self.cause = cause


class _BatchFailed(Exception):
    def __init__(self, position: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.position = position  # first event of the batch that failed
        self.cause = cause


class Projector:
    def __init__(
        self,
        engine: AsyncEngine,
        projections: Sequence[Projection],
        notifier: Notifier,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 30.0,
    ) -> None:
        self._engine = engine
        self.projections = {p.name: p for p in projections}
        self._notifier = notifier
        self.batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._wake = {name: asyncio.Event() for name in self.projections}
        self._tasks: list[asyncio.Task[None]] = []

    def wake(self, _position: int = 0) -> None:
        """New events were appended (hook for EventStore.on_append): look now, not at the
        next poll."""
        for event in self._wake.values():
            event.set()

    async def start(self) -> None:
        await ensure_checkpoints(self._engine, self.projections)
        for projection in self.projections.values():
            task = asyncio.create_task(self._run(projection), name=f"project-{projection.name}")
            self._tasks.append(task)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def catch_up(self, name: str, batch_size: int | None = None) -> int:
        """Apply everything up to the head now; returns how many events were applied.
        Raises ProjectionFailed if the projection fails."""
        projection = self.projections[name]
        await ensure_checkpoints(self._engine, [name])
        total = 0
        while applied := await self.advance(projection, batch_size or self.batch_size):
            total += applied
        return total

    async def _run(self, projection: Projection) -> None:
        wake = self._wake[projection.name]
        backoff = 0.1
        while True:
            wake.clear()
            try:
                applied = await self.advance(projection, self.batch_size)
                backoff = 0.1
            except Exception as error:  # failed projection, or the database is away
                if not isinstance(error, ProjectionFailed):
                    log.exception("projection %s could not advance", projection.name)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            if applied == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self._poll_interval)

    async def advance(self, projection: Projection, batch_size: int) -> int:
        """Apply the next batch; 0 when there is nothing to do (or another instance holds
        this projection right now)."""
        try:
            return await self._step(projection, batch_size)
        except _BatchFailed as failure:
            if batch_size == 1:
                raise await self._record_failure(projection, failure) from failure.cause
        # Commit what precedes the culprit, one event at a time, then stop at the culprit.
        applied = 0
        while applied < batch_size:
            try:
                step = await self._step(projection, 1)
            except _BatchFailed as failure:
                raise await self._record_failure(projection, failure) from failure.cause
            if step == 0:
                break
            applied += step
        return applied

    async def _step(self, projection: Projection, limit: int) -> int:
        async with write_transaction(self._engine) as conn:
            checkpoint = await _lock_checkpoint(conn, projection.name)
            if checkpoint is None:
                return 0
            recorded = await read_after(conn, checkpoint, limit)
            if not recorded:
                return 0
            try:
                batch = [
                    Envelope(
                        r.position,
                        r.stream_version,
                        codec.decode(r.event_type, r.schema_version, r.data),
                    )
                    for r in recorded
                ]
                await projection.apply(conn, batch)
            except Exception as error:
                raise _BatchFailed(recorded[0].position, error) from error
            position = recorded[-1].position
            await _save_checkpoint(conn, projection.name, position, LIVE)
        await self._notifier.publish(ProjectionUpdate(projection.name, position))
        return len(recorded)

    async def _record_failure(self, projection: Projection, failure: _BatchFailed) -> Exception:
        log.error(
            "projection %s stopped at position %d: %r",
            projection.name,
            failure.position,
            failure.cause,
            exc_info=failure.cause,
        )
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                checkpoints.update()
                .where(checkpoints.c.name == projection.name)
                .values(
                    state=FAILED,
                    error=repr(failure.cause)[:2000],
                    error_position=failure.position,
                    updated_at=datetime.now(UTC),
                )
            )
        return ProjectionFailed(projection.name, failure.position, failure.cause)


async def ensure_checkpoints(engine: AsyncEngine, names: Iterable[str]) -> None:
    """Give every named projection a checkpoint row (position 0) if it has none yet."""
    async with write_transaction(engine) as conn:
        existing = set(await conn.scalars(sa.select(checkpoints.c.name)))
        missing = [n for n in names if n not in existing]
        if missing:
            now = datetime.now(UTC)
            await conn.execute(
                checkpoints.insert(),
                [{"name": n, "position": 0, "state": LIVE, "updated_at": now} for n in missing],
            )


async def _lock_checkpoint(conn: AsyncConnection, name: str) -> int | None:
    query = (
        sa.select(checkpoints.c.position)
        .where(checkpoints.c.name == name)
        .with_for_update(skip_locked=True)
    )
    return await conn.scalar(query)


async def _save_checkpoint(conn: AsyncConnection, name: str, position: int, state: str) -> None:
    await conn.execute(
        checkpoints.update()
        .where(checkpoints.c.name == name)
        .values(
            position=position,
            # a rebuild stays "rebuilding" until it has caught up; anything else is live again
            state=sa.case((checkpoints.c.state == REBUILDING, REBUILDING), else_=state),
            error=None,
            error_position=None,
            updated_at=datetime.now(UTC),
        )
    )
