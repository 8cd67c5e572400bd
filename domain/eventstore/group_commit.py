"""Group commit: the appends that arrive while one transaction commits share the next one.

One writer task per store drains a queue of pending appends. A batch costs one transaction,
one commit (one fsync) and at most four statements however many appends it holds: read the
versions of the streams it touches, read the command ids it carries, insert all events, insert
all command records. Streams expected not to exist yet (every placeOrder) are not read: the
unique (stream, version) key refuses the insert if one does, and that append alone meets its
VersionConflict the way any refused append does (below). Each append in it still gets exactly
its own outcome: a stale expected version is that append's VersionConflict, a repeated command
id that append's first result; the others commit. If the batch as a whole fails, its appends
are tried again in one transaction, halved in savepoints until each part commits or is a
single append the database refuses: that one fails alone (AppendRefused, one log line), and
the others commit together, once. A bad append costs its neighbours one extra transaction and
a few savepoints, never a transaction each, so a few clients sending what the database refuses
cannot starve the rest.
Once a batch's events are written, the work given to ``in_transaction`` (the inline
projections, readmodels/inline.py) runs in the same transaction, before the one commit.

Appends are serialized, and that is what makes the global order safe to tail. On SQLite the
writer's ``BEGIN IMMEDIATE`` already admits one writer at a time. On PostgreSQL a sequence value
is taken at insert, not at commit, so without care position 7 can become visible before 6 and a
reader tailing "after my checkpoint" would skip 6 forever. Each batch therefore takes
``LOCK TABLE events IN EXCLUSIVE MODE`` (as the Python eventsourcing library does): it conflicts
only with itself and with writers, never with plain SELECTs, and it is held until commit, so
positions commit in the order they were taken. Group commit wins back what serializing costs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.errors import AppendRefused, CommandIdReused, VersionConflict
from domain.eventstore.engines import is_sqlite, write_transaction
from domain.eventstore.outages import is_outage
from domain.eventstore.records import (
    AppendResult,
    CommandRecord,
    ExpectedVersion,
    NewEvent,
    StreamState,
)
from domain.eventstore.tables import commands, events

log = logging.getLogger("ordergraph.store")

MAX_BATCH = 256  # appends per transaction; bounds statement size and one batch's latency


@dataclass(frozen=True, slots=True)
class Written:
    """An event as its batch wrote it, for the work done in the same transaction."""

    position: int
    stream_id: str
    stream_version: int
    event: NewEvent
    recorded_at: datetime


# Work done in each batch's transaction once its events are written: the inline projections
# (readmodels/inline.py). It fails for the database's failures only, never for its own
# (those it keeps to itself, in savepoints), and returns what to do once the batch commits.
AfterCommit = Callable[[], None]
InTransaction = Callable[[AsyncConnection, Sequence[Written]], Awaitable[AfterCommit | None]]


@dataclass(eq=False)
class PendingAppend:
    stream_id: str
    events: Sequence[NewEvent]
    expected: ExpectedVersion
    command: CommandRecord | None
    outcome: asyncio.Future[AppendResult] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class GroupCommitWriter:
    def __init__(self, engine: AsyncEngine, insert: InsertEvents | None = None) -> None:
        self._engine = engine
        # A seam for tests that fail or hold a batch between its insert and its commit.
        self._insert = insert or insert_events
        self._lock_table = not is_sqlite(engine)
        self._queue: list[PendingAppend] = []
        self._task: asyncio.Task[None] | None = None
        self.committed: list[Callable[[int], None]] = []
        # (appends in the batch, seconds from BEGIN to COMMIT), after each committed batch
        self.batch_observers: list[Callable[[int, float], None]] = []
        self.in_transaction: InTransaction | None = None

    async def append(self, pending: PendingAppend) -> AppendResult:
        self._queue.append(pending)
        if self._task is None:
            # The writer lives while there is work and ends when the queue is empty, so an
            # idle store holds no task (and nothing outlives the event loop it ran on).
            self._task = asyncio.create_task(self._drain(), name="event-store-writer")
        return await pending.outcome

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch: list[PendingAppend] = []  # _commit fills it once the database is ours
                try:
                    await self._commit(batch)
                except Exception as failure:
                    if not batch:  # failed before it held the database (unreachable, locked)
                        self._take_into(batch)
                    if is_outage(failure):
                        # The database is away, or the COMMIT itself was cut off (waiting for
                        # a synchronous standby that is down, say): then the batch may have
                        # committed locally without being durable. Trying again would find
                        # its command ids and acknowledge what no standby has; the outage is
                        # the answer, and a re-sent command id settles it later.
                        for pending in batch:
                            _settle(pending, failure)
                        continue
                    await self._commit_each_alone(batch)
        finally:
            self._task = None

    def _take_into(self, batch: list[PendingAppend]) -> None:
        batch += self._queue[:MAX_BATCH]
        del self._queue[:MAX_BATCH]

    async def _commit(self, batch: list[PendingAppend]) -> None:
        """Commit ``batch``; an empty list is filled from the queue inside the transaction."""
        started = time.perf_counter()
        async with write_transaction(self._engine) as conn:
            if self._lock_table:
                await conn.execute(sa.text("LOCK TABLE events IN EXCLUSIVE MODE"))
            if not batch:
                # Taken only now that the write lock is ours: the appends that arrived
                # while another transaction held it (the projector's, on SQLite) ride in
                # this one instead of waiting a whole turn. Taken before the wait, batches
                # alternated between 15 appends and 1 under 16 writers.
                self._take_into(batch)
            written: list[Written] = []
            outcomes = await self._write(conn, batch, written)
            after = await self._also(conn, written)
        self._settle_all(batch, outcomes, started, after)

    async def _also(self, conn: AsyncConnection, written: list[Written]) -> AfterCommit | None:
        if self.in_transaction is None or not written:
            return None
        return await self.in_transaction(conn, written)

    async def _commit_each_alone(self, batch: list[PendingAppend]) -> None:
        """The appends of a failed batch in one transaction, halved in savepoints until each
        part either commits or is one append the database refuses: each append meets only
        its own fate, the others commit together, in as few statements as halving allows."""
        outcomes: dict[PendingAppend, AppendResult | Exception] = {}
        started = time.perf_counter()
        written: list[Written] = []
        try:
            async with write_transaction(self._engine) as conn:
                if self._lock_table:
                    await conn.execute(sa.text("LOCK TABLE events IN EXCLUSIVE MODE"))
                await self._isolate(conn, batch, outcomes, written, failed=len(batch) > 1)
                after = await self._also(conn, written)
        except Exception as error:
            for pending in batch:
                _settle(pending, error)
            return
        self._settle_all(batch, outcomes, started, after)

    async def _isolate(
        self,
        conn: AsyncConnection,
        part: list[PendingAppend],
        outcomes: dict[PendingAppend, AppendResult | Exception],
        written: list[Written],
        *,
        failed: bool = False,
    ) -> None:
        """Write ``part`` in a savepoint, or (if it fails, or ``failed`` says it will) each
        half of it; a single append that fails is refused or, on a duplicate key, a conflict."""
        if not failed:
            try:
                kept: list[Written] = []
                async with conn.begin_nested():
                    outcomes |= await self._write(conn, part, kept)
                written += kept
                return
            except (DBAPIError, UnicodeError) as error:
                # What the database (or its driver, encoding) refuses in a statement. An
                # outage (a lost connection, a full disk, a read-only file) is not the data's
                # fault: it fails the whole batch, so every append in it is answered retryable.
                if is_outage(error):
                    raise
                if len(part) == 1:
                    outcomes[part[0]] = await self._refusal(conn, part[0], error)
                    return
        middle = len(part) // 2
        await self._isolate(conn, part[:middle], outcomes, written)
        await self._isolate(conn, part[middle:], outcomes, written)

    async def _refusal(
        self, conn: AsyncConnection, pending: PendingAppend, error: Exception
    ) -> Exception:
        if isinstance(error, IntegrityError):
            # A stream expected not to exist that does (its version was not read first), or,
            # unreachable while appends are serialized, a lost race: the typed conflict.
            versions = await _stream_versions(conn, [pending.stream_id])
            expected = pending.expected if isinstance(pending.expected, int) else None
            return VersionConflict(pending.stream_id, expected, versions.get(pending.stream_id, 0))
        log.warning(
            "append to stream %r refused by the database: %s", pending.stream_id, _first_line(error)
        )
        return AppendRefused(pending.stream_id)

    def _settle_all(
        self,
        batch: list[PendingAppend],
        outcomes: dict[PendingAppend, AppendResult | Exception],
        started: float,
        after: AfterCommit | None = None,
    ) -> None:
        if after is not None:
            try:
                after()
            except Exception:  # committed: never retry it
                log.exception("after-commit work %r failed", after)
        head = max(
            (o.position for o in outcomes.values() if isinstance(o, AppendResult)), default=0
        )
        for pending in batch:
            _settle(pending, outcomes[pending])
        elapsed = time.perf_counter() - started
        for observer in self.batch_observers:
            observer(len(batch), elapsed)
        if head:
            for listener in self.committed:
                try:
                    listener(head)
                except Exception:  # the batch is committed and settled: never retry it
                    log.exception("append listener %r failed", listener)

    async def _write(
        self, conn: AsyncConnection, batch: list[PendingAppend], written: list[Written]
    ) -> dict[PendingAppend, AppendResult | Exception]:
        versions = await _stream_versions(conn, {p.stream_id for p in batch if _may_exist(p)})
        previous = await stored_commands(conn, [p.command.command_id for p in batch if p.command])
        outcomes: dict[PendingAppend, AppendResult | Exception] = {}
        first_of: dict[str, PendingAppend] = {}  # command id -> its append in this batch
        accepted: list[tuple[PendingAppend, int]] = []  # with the stream version before it
        replayed = False  # a command id found recorded: its first result is the answer
        for pending in batch:
            command = pending.command
            if command is not None and command.command_id in first_of:
                continue  # a copy of an append in this batch: settled from it below
            if command is not None and command.command_id in previous:
                outcomes[pending] = first_result(previous[command.command_id], command)
                replayed = True
                continue
            actual = versions.get(pending.stream_id, 0)
            if (conflict := _conflict(pending.stream_id, pending.expected, actual)) is not None:
                outcomes[pending] = conflict
                continue
            versions[pending.stream_id] = actual + len(pending.events)
            accepted.append((pending, actual))
            if command is not None:
                first_of[command.command_id] = pending
        if replayed and not accepted and self._lock_table:  # PostgreSQL; nothing else to write
            await confirm_durable(conn)
        if accepted:
            now = datetime.now(UTC)
            rows = [
                _event_row(pending.stream_id, version + offset, event, now)
                for pending, version in accepted
                for offset, event in enumerate(pending.events, start=1)
            ]
            positions = iter(await self._insert(conn, rows))
            for pending, version in accepted:
                for offset, event in enumerate(pending.events, start=1):
                    last = next(positions)
                    written.append(Written(last, pending.stream_id, version + offset, event, now))
                outcomes[pending] = AppendResult(
                    pending.stream_id, version + len(pending.events), last
                )
            records = [_command_row(p.command, outcomes[p], now) for p, _ in accepted if p.command]
            if records:
                await conn.execute(sa.insert(commands), records)
        for pending in batch:
            if pending not in outcomes:  # an in-batch copy: the first's result, or reuse
                assert pending.command is not None
                first = first_of[pending.command.command_id]
                outcomes[pending] = _copy_of(first, outcomes[first], pending.command)
        return outcomes


InsertEvents = Callable[[AsyncConnection, list[dict[str, Any]]], Awaitable[list[int]]]


async def insert_events(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert event rows in one statement; their positions, in the rows' order.

    RETURNING hands rows back in no promised order, so each comes back with its unique
    (stream, version) to be matched. Asking SQLAlchemy to sort them instead
    (``sort_by_parameter_order``) made it insert one row per statement on SQLite, where it
    has no way to sort: one thread hand-off per event of the batch."""
    returned = await conn.execute(_INSERT_EVENTS, rows)
    position = {(r.stream_id, r.stream_version): r.position for r in returned}
    return [position[row["stream_id"], row["stream_version"]] for row in rows]


_INSERT_EVENTS = sa.insert(events).returning(
    events.c.position, events.c.stream_id, events.c.stream_version
)


# An xid makes this transaction's COMMIT write a commit record, and a commit record waits for
# the standbys that synchronous_commit asks for: since WAL is ordered, once it returns every
# earlier commit is as durable as a new one would be.
_TAKE_XID = sa.text("SELECT pg_current_xact_id()")


async def confirm_durable(conn: AsyncConnection) -> None:
    """PostgreSQL: make the commit of this transaction (which may write nothing) wait until
    what it read is replicated as ``synchronous_commit`` says. A re-sent command id found
    recorded was perhaps committed only locally (its first COMMIT cut off while a
    synchronous standby was down): it is acknowledged only once it is durable."""
    await conn.execute(_TAKE_XID)


def _first_line(error: BaseException) -> str:
    orig = getattr(error, "orig", None) or error
    return f"{type(orig).__name__}: {str(orig).splitlines()[0] if str(orig) else ''}"


def _settle(pending: PendingAppend, outcome: AppendResult | BaseException) -> None:
    if pending.outcome.done():  # its caller went away (cancelled); the append stands
        return
    if isinstance(outcome, AppendResult):
        pending.outcome.set_result(outcome)
    else:
        pending.outcome.set_exception(outcome)


def _event_row(stream_id: str, version: int, event: NewEvent, now: datetime) -> dict[str, Any]:
    return {
        "stream_id": stream_id,
        "stream_version": version,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "data": event.data,
        "meta": event.metadata,
        "recorded_at": now,
    }


def _command_row(
    command: CommandRecord, result: AppendResult | Exception, now: datetime
) -> dict[str, Any]:
    assert isinstance(result, AppendResult)
    return {
        "command_id": command.command_id,
        "stream_id": result.stream_id,
        "fingerprint": command.fingerprint,
        "stream_version": result.version,
        "position": result.position,
        "recorded_at": now,
    }


def _conflict(stream_id: str, expected: ExpectedVersion, actual: int) -> VersionConflict | None:
    if expected is StreamState.ANY:
        return None
    if expected is StreamState.NO_STREAM or expected == 0:
        return None if actual == 0 else VersionConflict(stream_id, None, actual)
    assert isinstance(expected, int)
    return None if expected == actual else VersionConflict(stream_id, expected, actual)


def first_result(previous: Any, command: CommandRecord) -> AppendResult | Exception:
    """The stored first result of a command id, or CommandIdReused if the payload differs."""
    if previous.fingerprint != command.fingerprint:
        return CommandIdReused(command.command_id)
    return AppendResult(
        previous.stream_id, previous.stream_version, previous.position, duplicate=True
    )


def _copy_of(
    first: PendingAppend, outcome: AppendResult | Exception, command: CommandRecord
) -> AppendResult | Exception:
    assert first.command is not None
    if first.command.fingerprint != command.fingerprint:
        return CommandIdReused(command.command_id)
    if not isinstance(outcome, AppendResult):
        return outcome
    return AppendResult(outcome.stream_id, outcome.version, outcome.position, duplicate=True)


# Built once: constructing statements per batch showed up in profiles. Expanding bind
# parameters take the list of ids at execution time.
_STREAM_VERSIONS = (
    sa.select(events.c.stream_id, sa.func.max(events.c.stream_version))
    .where(events.c.stream_id.in_(sa.bindparam("ids", expanding=True)))
    .group_by(events.c.stream_id)
)
_COMMANDS = sa.select(
    commands.c.command_id,
    commands.c.stream_id,
    commands.c.fingerprint,
    commands.c.stream_version,
    commands.c.position,
).where(commands.c.command_id.in_(sa.bindparam("ids", expanding=True)))


def _may_exist(pending: PendingAppend) -> bool:
    return not (pending.expected is StreamState.NO_STREAM or pending.expected == 0)


async def _stream_versions(conn: AsyncConnection, stream_ids: Any) -> dict[str, int]:
    if not stream_ids:
        return {}
    rows = await conn.execute(_STREAM_VERSIONS, {"ids": list(stream_ids)})
    return {stream_id: int(version) for stream_id, version in rows}


async def stored_commands(conn: AsyncConnection, command_ids: list[str]) -> dict[str, Any]:
    if not command_ids:
        return {}
    return {row.command_id: row for row in await conn.execute(_COMMANDS, {"ids": command_ids})}
