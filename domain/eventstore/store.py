"""The event store: an append-only table on SQLAlchemy, one code path for SQLite and PostgreSQL.

Writes go through group commit (domain/eventstore/group_commit.py), which also explains why
the global order is safe to tail. Reads are plain indexed range scans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.eventstore.engines import is_sqlite, reader
from domain.eventstore.group_commit import (
    GroupCommitWriter,
    InsertEvents,
    InTransaction,
    PendingAppend,
    confirm_durable,
    first_result,
    stored_commands,
)
from domain.eventstore.records import (
    JSON,
    AppendResult,
    CommandRecord,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamState,
)
from domain.eventstore.tables import events

__all__ = [
    "JSON",
    "AppendResult",
    "CommandRecord",
    "EventStore",
    "ExpectedVersion",
    "NewEvent",
    "RecordedEvent",
    "StreamState",
    "head_on",
    "read_after",
]

_EVENT_COLUMNS = (
    events.c.position,
    events.c.stream_id,
    events.c.stream_version,
    events.c.event_type,
    events.c.schema_version,
    events.c.data,
    events.c.meta.label("meta"),
    events.c.recorded_at,
)


class EventStore:
    def __init__(self, engine: AsyncEngine, *, insert: InsertEvents | None = None) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._writer = GroupCommitWriter(engine, insert)

    def on_append(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(position)`` after appends commit (in this process)."""
        self._writer.committed.append(listener)

    def in_each_batch(self, work: InTransaction) -> None:
        """Run ``work`` in each append transaction once its events are written (the inline
        projections: readmodels/inline.py); what it returns runs once the batch commits."""
        self._writer.in_transaction = work

    def on_batch(self, observer: Callable[[int, float], None]) -> None:
        """Call ``observer(appends, seconds)`` after each group-commit transaction commits."""
        self._writer.batch_observers.append(observer)

    async def append(
        self,
        stream_id: str,
        new_events: Sequence[NewEvent],
        expected_version: ExpectedVersion,
        command: CommandRecord | None = None,
    ) -> AppendResult:
        """Append atomically, or raise VersionConflict and write nothing.

        With a command record, a command id already stored returns that command's first
        result (``duplicate=True``) without writing; the same id with another fingerprint
        raises CommandIdReused.
        """
        if not new_events:
            raise ValueError("append needs at least one event")
        pending = PendingAppend(stream_id, new_events, expected_version, command)
        return await self._writer.append(pending)

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        query = (
            sa.select(*_EVENT_COLUMNS)
            .where(events.c.stream_id == stream_id, events.c.stream_version >= from_version)
            .order_by(events.c.stream_version)
        )
        async with self._reader.connect() as conn:
            return [_recorded(row) for row in await conn.execute(query)]

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with a global position above ``after``, in order: what projectors tail."""
        async with self._reader.connect() as conn:
            return await read_after(conn, after, limit)

    async def head_position(self) -> int:
        async with self._reader.connect() as conn:
            return await head_on(conn)

    async def find_command(self, command: CommandRecord) -> AppendResult | None:
        """The first result of this command id, if it was handled before (see append)."""
        async with self._reader.connect() as conn:
            previous = (await stored_commands(conn, [command.command_id])).get(command.command_id)
        if previous is None:
            return None
        if not is_sqlite(self._engine):
            async with self._engine.begin() as conn:
                await confirm_durable(conn)  # see confirm_durable: no ack before it is durable
        outcome = first_result(previous, command)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


async def head_on(conn: AsyncConnection) -> int:
    """The global position of the last event stored (0 for an empty store), on the caller's
    connection."""
    return int(await conn.scalar(sa.select(sa.func.max(events.c.position))) or 0)


async def read_after(conn: AsyncConnection, after: int, limit: int) -> list[RecordedEvent]:
    """``read_all`` on a connection the caller holds (a projector reads in its transaction)."""
    query = (
        sa.select(*_EVENT_COLUMNS)
        .where(events.c.position > after)
        .order_by(events.c.position)
        .limit(limit)
    )
    return [_recorded(row) for row in await conn.execute(query)]


def _recorded(row: Any) -> RecordedEvent:
    return RecordedEvent(
        position=row.position,
        stream_id=row.stream_id,
        stream_version=row.stream_version,
        event_type=row.event_type,
        schema_version=row.schema_version,
        data=row.data,
        metadata=row.meta,
        recorded_at=row.recorded_at,
    )
