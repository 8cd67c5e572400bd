"""The event store: an append-only table on SQLAlchemy, one code path for SQLite and PostgreSQL.

Appends are serialized, and that is what makes the global order safe to tail. On SQLite the
writer's ``BEGIN IMMEDIATE`` already admits one writer at a time. On PostgreSQL a sequence value
is taken at insert, not at commit, so without care position 7 can become visible before 6 and a
reader tailing "after my checkpoint" would skip 6 forever. Each append therefore takes
``LOCK TABLE events IN EXCLUSIVE MODE`` (as the Python eventsourcing library does): it conflicts
only with itself and with writers, never with plain SELECTs, and it is held until commit, so
positions commit in the order they were taken. The price is one append committing at a time;
group commit is what we give up, and the benchmark measures it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.db import is_sqlite, writer
from domain.errors import CommandIdReused, VersionConflict
from domain.tables import commands, events

JSON = dict[str, Any]
AnyRow = sa.Row[*tuple[Any, ...]]


class StreamState(enum.Enum):
    ANY = "any"
    NO_STREAM = "no stream"


# What an appender expects the stream to be at: any version, no stream yet, or exactly N.
ExpectedVersion = int | StreamState


@dataclass(frozen=True, slots=True)
class NewEvent:
    event_type: str
    schema_version: int
    data: JSON
    metadata: JSON


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    position: int
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    data: JSON
    metadata: JSON
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """The idempotency key of an append and a digest of the command that made it."""

    command_id: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class AppendResult:
    stream_id: str
    version: int  # stream version of the last event appended
    position: int  # global position of the last event appended
    duplicate: bool = False  # True: the command id was seen before; nothing was written


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
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._serialize_appends = not is_sqlite(engine)
        self._append_listeners: list[Callable[[int], None]] = []

    def on_append(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(position)`` after each append commits (in this process)."""
        self._append_listeners.append(listener)

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
        try:
            async with self._writer.begin() as conn:
                if self._serialize_appends:
                    await conn.execute(sa.text("LOCK TABLE events IN EXCLUSIVE MODE"))
                actual, previous = await _stream_version_and_command(conn, stream_id, command)
                if previous is not None and command is not None:
                    return _check_duplicate(previous, command)
                _check_expected(stream_id, expected_version, actual)
                result = await self._insert(conn, stream_id, actual, new_events, command)
        except IntegrityError as error:
            # Unreachable while appends are serialized; kept so that a lost race can only
            # ever surface as the typed conflict, never as a driver error or an overwrite.
            async with self._engine.connect() as conn:
                actual = await _stream_version(conn, stream_id)
            expected = expected_version if isinstance(expected_version, int) else None
            raise VersionConflict(stream_id, expected, actual) from error
        for listener in self._append_listeners:
            listener(result.position)
        return result

    async def _insert(
        self,
        conn: AsyncConnection,
        stream_id: str,
        version: int,
        new_events: Sequence[NewEvent],
        command: CommandRecord | None,
    ) -> AppendResult:
        now = datetime.now(UTC)
        rows = [
            {
                "stream_id": stream_id,
                "stream_version": version + offset,
                "event_type": event.event_type,
                "schema_version": event.schema_version,
                "data": event.data,
                "meta": event.metadata,
                "recorded_at": now,
            }
            for offset, event in enumerate(new_events, start=1)
        ]
        insert = sa.insert(events).returning(events.c.position, sort_by_parameter_order=True)
        positions = (await conn.execute(insert, rows)).scalars().all()
        result = AppendResult(stream_id, version + len(rows), positions[-1])
        if command is not None:
            await conn.execute(
                sa.insert(commands).values(
                    command_id=command.command_id,
                    stream_id=stream_id,
                    fingerprint=command.fingerprint,
                    stream_version=result.version,
                    position=result.position,
                    recorded_at=now,
                )
            )
        return result

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]:
        query = (
            sa.select(*_EVENT_COLUMNS)
            .where(events.c.stream_id == stream_id, events.c.stream_version >= from_version)
            .order_by(events.c.stream_version)
        )
        async with self._engine.connect() as conn:
            return [_recorded(row) for row in await conn.execute(query)]

    async def read_all(self, after: int = 0, limit: int = 1000) -> list[RecordedEvent]:
        """Events with a global position above ``after``, in order: what projectors tail."""
        async with self._engine.connect() as conn:
            return await read_after(conn, after, limit)

    async def head_position(self) -> int:
        async with self._engine.connect() as conn:
            head = await conn.scalar(sa.select(sa.func.max(events.c.position)))
        return int(head or 0)

    async def find_command(self, command: CommandRecord) -> AppendResult | None:
        """The first result of this command id, if it was handled before (see append)."""
        async with self._engine.connect() as conn:
            previous = await _find_command(conn, command.command_id)
        return None if previous is None else _check_duplicate(previous, command)


_COMMAND_COLUMNS = (
    commands.c.stream_id,
    commands.c.fingerprint,
    commands.c.stream_version,
    commands.c.position,
)


async def read_after(conn: AsyncConnection, after: int, limit: int) -> list[RecordedEvent]:
    """``read_all`` on a connection the caller holds (a projector reads in its transaction)."""
    query = (
        sa.select(*_EVENT_COLUMNS)
        .where(events.c.position > after)
        .order_by(events.c.position)
        .limit(limit)
    )
    return [_recorded(row) for row in await conn.execute(query)]


async def _find_command(conn: AsyncConnection, command_id: str) -> AnyRow | None:
    query = sa.select(*_COMMAND_COLUMNS).where(commands.c.command_id == command_id)
    return (await conn.execute(query)).first()


def _check_duplicate(previous: AnyRow, command: CommandRecord) -> AppendResult:
    if previous.fingerprint != command.fingerprint:
        raise CommandIdReused(command.command_id)
    return AppendResult(
        previous.stream_id, previous.stream_version, previous.position, duplicate=True
    )


async def _stream_version_and_command(
    conn: AsyncConnection, stream_id: str, command: CommandRecord | None
) -> tuple[int, AnyRow | None]:
    """The stream's version and the command's earlier record, in one round trip."""
    columns: list[Any] = [_version_of(stream_id).scalar_subquery().label("current_version")]
    if command is not None:
        columns += [
            sa.select(column)
            .where(commands.c.command_id == command.command_id)
            .scalar_subquery()
            .label(column.name)
            for column in _COMMAND_COLUMNS
        ]
    row = (await conn.execute(sa.select(*columns))).one()
    previous = row if command is not None and row.fingerprint is not None else None
    return int(row.current_version or 0), previous


def _version_of(stream_id: str) -> sa.Select[tuple[int | None]]:
    return sa.select(sa.func.max(events.c.stream_version)).where(events.c.stream_id == stream_id)


async def _stream_version(conn: AsyncConnection, stream_id: str) -> int:
    return int(await conn.scalar(_version_of(stream_id)) or 0)


def _check_expected(stream_id: str, expected: ExpectedVersion, actual: int) -> None:
    if expected is StreamState.ANY:
        return
    if expected is StreamState.NO_STREAM or expected == 0:
        if actual != 0:
            raise VersionConflict(stream_id, None, actual)
        return
    if expected != actual:
        assert isinstance(expected, int)
        raise VersionConflict(stream_id, expected, actual)


def _recorded(row: AnyRow) -> RecordedEvent:
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
