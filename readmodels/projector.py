"""The projector: tails the event store and feeds each projection, exactly once.

Each projection has its own checkpoint. While all are healthy they advance together: one
transaction reads a batch of events once and feeds every projection its share, which costs a
third of the round trips and decoding of three separate passes. A projection that fails drops
out of the shared pass until its retry is due, so it never holds the others back. A batch's
read-model writes and the new checkpoints commit in one transaction: after a crash the batch
is either wholly applied and checkpointed, or not at all. The checkpoint rows are locked for
the batch (``FOR UPDATE SKIP LOCKED``; on SQLite the writer's ``BEGIN IMMEDIATE``), so
projector instances in several processes take turns and never apply a batch twice.

A projection that raises stops at the failing event and never skips it: the batch is retried
one event at a time to commit everything before the culprit, the culprit's position and error
are recorded as state ``failed``, and it is retried with backoff until the cause is fixed (or
an operator retries it or skips that one event, on record: see readmodels/operations.py).

Each checkpoint row names the version of the projection it is for: a pass writes that
version's tables (readmodels/versions.py). Beside the passes, the projector builds new
versions in the background and switches to them (readmodels/builds.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.eventstore.engines import write_transaction
from readmodels.builds import (
    FAILED,
    LIVE,
    Builder,
    BuildFailed,
    BuildLost,
    drop_retired,
    ensure_versions,
)
from readmodels.feed import Batch, PoisonedEvent, read_stored_after
from readmodels.notifications.messages import Appended, Notifier, ProjectionUpdate, Resync
from readmodels.projection import Projection
from readmodels.stall_log import StallLog, short
from readmodels.tables import checkpoints

log = logging.getLogger("ordergraph.projector")

CONTENDED_RETRY = 0.02  # seconds before looking again at checkpoints another instance holds
# Retired versions' tables are dropped this long after the switch (RETIRED_GRACE_SECONDS):
# a query that read the old version just before the switch still finds them meanwhile.
RETIRED_GRACE_SECONDS = 600.0

# Called after each committed pass: (projections advanced, events applied, seconds taken).
PassObserver = Callable[[Sequence[str], int, float], None]


class Leadership(Protocol):
    """Which one of several projector processes runs (see readmodels/leadership.py)."""

    @property
    def held(self) -> bool: ...

    async def acquire(self) -> None:
        """Return once this process leads; wait while another does."""

    async def release(self) -> None: ...


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
        leadership: Leadership | None = None,
        build_batch_size: int = 5000,
        retired_grace: float = RETIRED_GRACE_SECONDS,
    ) -> None:
        self._engine = engine
        self.projections = {p.name: p for p in projections}
        self._notifier = notifier
        self.batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._contended = False
        self._tasks: list[asyncio.Task[None]] = []
        self.pass_observers: list[PassObserver] = []
        self._stalls = StallLog(log)
        self._leadership = leadership
        self.builder = Builder(engine, projections, notifier, batch_size=build_batch_size)
        self.retired_grace = retired_grace
        self._build_wake = asyncio.Event()
        self._unversioned: list[str] = []

    @property
    def leading(self) -> bool:
        """True when this projector is the one that runs (always, without a leadership)."""
        return self._leadership is None or self._leadership.held

    def wake(self, _position: int = 0) -> None:
        """New events were appended (hook for EventStore.on_append): look now, not at the
        next poll."""
        self._wake.set()

    def wake_builds(self) -> None:
        """A build was asked for: look now, not at the next poll."""
        self._build_wake.set()

    async def start(self, *, wake_on_announced_appends: bool = False) -> None:
        """Run in the background. With ``wake_on_announced_appends``, appends announced by
        other processes through the notifier (``Notifier.announce``) wake it too, not just polls."""
        if wake_on_announced_appends:
            subscribed = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._wake_on_appends(subscribed)))
            await subscribed.wait()  # listening before the checkpoints say we are up
        await ensure_checkpoints(self._engine, self.projections)
        # A projection whose code version is newer than its active version's starts being
        # built here (a deploy changed it). Those another instance holds right now are
        # seen to by the build loop, which waits for them.
        self._unversioned = await ensure_versions(
            self._engine, list(self.projections.values()), skip_locked=True
        )
        self._tasks.append(asyncio.create_task(self._run(), name="projector"))
        self._tasks.append(asyncio.create_task(self._build(), name="projection builds"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(Exception):  # the next builder takes over without waiting
            await self.builder.release()
        if self._leadership is not None:
            await self._leadership.release()

    async def _wake_on_appends(self, subscribed: asyncio.Event) -> None:
        async with self._notifier.subscribe() as updates:
            subscribed.set()
            async for update in updates:
                # Resync: appends announced while the listener was away are unheard of.
                if isinstance(update, Appended | Resync):
                    self.wake()

    async def catch_up(self, name: str, batch_size: int | None = None) -> int:
        """Apply everything up to the head now; returns how many events were applied.
        Raises ProjectionFailed if the projection fails."""
        projection = self.projections[name]
        await ensure_checkpoints(self._engine, [name])
        total = 0
        while applied := await self.advance(projection, batch_size or self.batch_size):
            total += applied
        return total

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        retry_at = dict.fromkeys(self.projections, 0.0)  # when a failed projection may retry
        backoff = dict.fromkeys(self.projections, 0.0)
        failed: set[str] = set()  # recorded as failed, waiting for their retry
        while True:
            if not self.leading:
                assert self._leadership is not None
                await self._leadership.acquire()  # another process leads until it dies
            self._wake.clear()
            if failed:
                # An operator may have retried it or skipped its event meanwhile: go now.
                with contextlib.suppress(Exception):
                    for name in await self._no_longer_failed(failed):
                        retry_at[name] = backoff[name] = 0.0
                        failed.discard(name)
            now = loop.time()
            due = [p for name, p in self.projections.items() if retry_at[name] <= now]
            try:
                applied = await self.advance_together(due, self.batch_size)
            except Exception:
                # Someone in the shared pass failed (or the database is away): go one by one,
                # so the healthy ones commit and the culprit is found and recorded.
                applied = 0
                for projection in due:
                    try:
                        applied += await self.advance(projection, self.batch_size)
                        backoff[projection.name] = 0.0
                        failed.discard(projection.name)
                        self._stalls.running(projection.name)
                    except Exception as error:
                        if isinstance(error, ProjectionFailed):
                            failed.add(projection.name)
                        else:
                            # Not the projection's fault (the database is away, say): it
                            # is not recorded as failed, but it is said, once.
                            self._stalls.stalled(
                                projection.name, f"cannot advance: {short(error)}", error
                            )
                        delay = min(max(backoff[projection.name] * 2, 0.1), self._max_backoff)
                        backoff[projection.name] = delay
                        retry_at[projection.name] = loop.time() + delay
            else:
                for projection in due:
                    backoff[projection.name] = retry_at[projection.name] = 0.0
                    failed.discard(projection.name)
                    self._stalls.running(projection.name)
            if applied == 0:
                waiting = [t - loop.time() for t in retry_at.values() if t > loop.time()]
                # Held by another instance: look again soon, but not in a tight loop.
                ceiling = CONTENDED_RETRY if self._contended else self._poll_interval
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min([ceiling, *waiting]))

    async def _no_longer_failed(self, names: set[str]) -> list[str]:
        query = sa.select(checkpoints.c.name, checkpoints.c.state).where(
            checkpoints.c.name.in_(list(names))
        )
        async with self._engine.connect() as conn:
            return [row.name for row in await conn.execute(query) if row.state != FAILED]

    async def _build(self) -> None:
        """Build the versions under way, a batch of each in turn, while leading; drop the
        tables of versions retired longer than the grace period."""
        loop = asyncio.get_running_loop()
        retry_at: dict[tuple[str, int], float] = {}
        backoff: dict[tuple[str, int], float] = {}
        cleaned_at = 0.0
        while True:
            self._build_wake.clear()
            worked = False
            try:
                if self._unversioned:
                    names = set(self._unversioned)
                    chosen = [p for n, p in self.projections.items() if n in names]
                    await ensure_versions(self._engine, chosen)
                    self._unversioned, worked = [], True
                elif self.leading:
                    worked = await self._build_once(retry_at, backoff)
                    if loop.time() - cleaned_at >= min(self.retired_grace / 10, 30.0):
                        await drop_retired(
                            self._engine, self.projections.values(), older_than=self.retired_grace
                        )
                        cleaned_at = loop.time()
            except Exception as error:  # the database is away, say: said once, tried again
                self._stalls.stalled("builds", f"cannot build: {short(error)}", error)
            else:
                self._stalls.running("builds")
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._build_wake.wait(), self._poll_interval)

    async def _build_once(
        self, retry_at: dict[tuple[str, int], float], backoff: dict[tuple[str, int], float]
    ) -> bool:
        loop = asyncio.get_running_loop()
        mine = []
        for key, state in (await self.builder.builds_to_do()).items():
            if state != FAILED:  # retried or skipped by an operator: no need to wait
                retry_at.pop(key, None)
            if retry_at.get(key, 0.0) > loop.time():
                continue
            with contextlib.suppress(BuildLost):  # gone meanwhile
                if self.builder.holds(*key) or await self.builder.claim(*key) is None:
                    mine.append(key)  # else another process builds it
        if not mine:
            return False
        try:
            step = await self.builder.step(*mine)
        except BuildLost:
            return True
        except BuildFailed as failure:
            key = (failure.name, failure.version)
            backoff[key] = min(max(backoff.get(key, 0.0) * 2, 0.1), self._max_backoff)
            retry_at[key] = loop.time() + backoff[key]
            return True
        for key in mine:
            backoff.pop(key, None)
        return step.applied > 0 or bool(step.switched)

    async def advance_together(self, projections: Sequence[Projection], batch_size: int) -> int:
        """One batch for several projections in one transaction (events read and decoded
        once); raises if any of them fails, and then nothing of the batch is kept."""
        if not projections:
            return 0
        started = time.perf_counter()
        async with write_transaction(self._engine) as conn:
            locked = await _lock_checkpoints(conn, [p.name for p in projections])
            # Another instance holds some of them mid-pass: it may have read its batch before
            # our latest append committed, so look again soon rather than at the next poll.
            self._contended = len(locked) < len(projections)
            feeding = {
                p.name: (p.at(locked[p.name].version), locked[p.name].position)
                for p in projections
                if p.name in locked and _ours(p, locked[p.name])
            }
            if not feeding:
                return 0
            start = min(position for _, position in feeding.values())
            stored = await read_stored_after(conn, start, batch_size)
            if not stored:
                return 0
            batch = Batch(stored)
            last = batch.last
            advanced = []
            for name, (projection, at) in feeding.items():
                if at >= last:
                    continue
                if envelopes := batch.for_projection(projection, at):
                    await projection.apply(conn, envelopes)
                advanced.append(name)
            await _save_checkpoint(conn, advanced, last)
        if advanced:
            self._observe(advanced, len(stored), started)
            await self._publish([ProjectionUpdate(n, last) for n in advanced])
        return len(stored)

    def _observe(self, names: Sequence[str], applied: int, started: float) -> None:
        elapsed = time.perf_counter() - started
        for observer in self.pass_observers:
            observer(names, applied, elapsed)

    async def advance(self, projection: Projection, batch_size: int) -> int:
        """Apply the next batch; 0 when there is nothing to do (or another instance holds
        this projection right now)."""
        try:
            return await self._step(projection, batch_size)
        except _BatchFailed as failure:
            if batch_size == 1:
                await self._stop_at(projection, failure)
        # Commit what precedes the culprit, one event at a time, then stop at the culprit.
        applied = 0
        while applied < batch_size:
            try:
                step = await self._step(projection, 1)
            except _BatchFailed as failure:
                await self._stop_at(projection, failure)
                continue  # its checkpoint had moved past the culprit: go on from there
            if step == 0:
                break
            applied += step
        return applied

    async def _stop_at(self, projection: Projection, failure: _BatchFailed) -> None:
        """Record the failure and raise ProjectionFailed; or return, if the checkpoint has
        moved past the event since the pass rolled back (an operator skipped it)."""
        recorded = await self._record_failure(projection, failure)
        if recorded is not None:
            raise recorded from failure.cause

    async def _step(self, projection: Projection, limit: int) -> int:
        started = time.perf_counter()
        async with write_transaction(self._engine) as conn:
            locked = await _lock_checkpoints(conn, [projection.name])
            found = locked.get(projection.name)
            if found is None or not _ours(projection, found):
                return 0
            projection = projection.at(found.version)
            checkpoint = found.position
            stored = await read_stored_after(conn, checkpoint, limit)
            if not stored:
                return 0
            batch = Batch(stored)
            try:
                if envelopes := batch.for_projection(projection, checkpoint):
                    await projection.apply(conn, envelopes)
            except PoisonedEvent as poisoned:
                raise _BatchFailed(poisoned.position, poisoned) from poisoned
            except Exception as error:
                raise _BatchFailed(stored[0].position, error) from error
            position = batch.last
            await _save_checkpoint(conn, [projection.name], position)
        self._observe([projection.name], len(stored), started)
        await self._publish([ProjectionUpdate(projection.name, position)])
        return len(stored)

    async def _publish(self, updates: list[ProjectionUpdate]) -> None:
        # The batch is committed: a failed announcement must not look like a failed batch.
        # Waiters elsewhere re-read the checkpoints (see readmodels/waiting.py).
        try:
            await self._notifier.publish_many(updates)
        except Exception as error:
            log.warning("could not announce %s: %r", updates, error)

    async def _record_failure(
        self, projection: Projection, failure: _BatchFailed
    ) -> ProjectionFailed | None:
        error = short(failure.cause)
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(
                checkpoints.update()
                # Only where the checkpoint still stands before the event: an operator's skip
                # of it (or another instance) may have moved it on since this pass rolled back.
                .where(
                    checkpoints.c.name == projection.name,
                    checkpoints.c.position < failure.position,
                )
                .values(
                    state=FAILED,
                    error=error,  # clients see only its code and position: public_error
                    error_position=failure.position,
                    updated_at=datetime.now(UTC),
                )
            )
        if result.rowcount == 0:
            return None
        where = f"failed at position {failure.position}: {error}"
        self._stalls.stalled(projection.name, where, failure.cause)
        return ProjectionFailed(projection.name, failure.position, failure.cause)


_DATABASE_ERRORS = tuple(
    f"{name}:"
    for name in (
        "DBAPIError",
        "DataError",
        "IntegrityError",
        "InterfaceError",
        "InternalError",
        "NotSupportedError",
        "OperationalError",
        "ProgrammingError",
    )
)


def error_code(error: str) -> str:
    """A short, stable name for why a projection stopped, from its recorded error (written
    by readmodels/stall_log.short: the exception's class name, then its message)."""
    if error.startswith("cannot decode the event"):
        return "unreadable_event"
    if error.startswith(_DATABASE_ERRORS):
        return "database_refused"  # the read model cannot hold what the event says
    if error.startswith(("BrokerUnavailable", "StreamMisconfigured")):
        return "broker_unavailable"  # the integration relay (integration/relay.py)
    if error.startswith("UnmappedEvent"):
        return "unmapped_event"  # the relay: no integration mapping for a stored event
    return "projection_error"


def public_error(error: str | None, position: int | None) -> str | None:
    """What a client is told about a stopped projection: the code and where, not the driver's
    text (which can name tables, values and server internals)."""
    if error is None or position is None:
        return error  # None, or our own note (an interrupted rebuild), not a failure
    return (
        f"{error_code(error)}: the projection stopped at position {position};"
        " the detail is in the server log"
    )


async def ensure_checkpoints(
    engine: AsyncEngine, names: Iterable[str] | Mapping[str, Projection]
) -> None:
    """Give every named projection a checkpoint row (position 0) if it has none yet; for
    projections given by name, its version 1 is of their code version."""
    code = {n: p.version for n, p in names.items()} if isinstance(names, Mapping) else {}
    async with write_transaction(engine) as conn:
        existing = set(await conn.scalars(sa.select(checkpoints.c.name)))
        missing = [n for n in names if n not in existing]
        if missing:
            now = datetime.now(UTC)
            # Several processes start at once: the one that inserts second inserts nothing.
            insert = (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(
                checkpoints
            )
            await conn.execute(
                insert.on_conflict_do_nothing(index_elements=["name"]),
                [
                    {
                        "name": n,
                        "position": 0,
                        "state": LIVE,
                        "updated_at": now,
                        "version": 1,
                        "code_version": code.get(n, 1),
                    }
                    for n in missing
                ],
            )


class Checkpoint(NamedTuple):
    position: int
    state: str
    version: int  # of the tables it is for
    code_version: int


def _ours(projection: Projection, checkpoint: Checkpoint) -> bool:
    """False when newer code built the active version (a rolling deploy): that code feeds it."""
    return checkpoint.code_version <= projection.version


async def _lock_checkpoints(conn: AsyncConnection, names: list[str]) -> dict[str, Checkpoint]:
    """The named checkpoints this transaction could lock; another projector instance holding
    one means that projection is skipped this time."""
    query = (
        sa.select(
            checkpoints.c.name,
            checkpoints.c.position,
            checkpoints.c.state,
            checkpoints.c.version,
            checkpoints.c.code_version,
        )
        .where(checkpoints.c.name.in_(names))
        .with_for_update(skip_locked=True)
    )
    return {
        row.name: Checkpoint(row.position, row.state, row.version, row.code_version)
        for row in await conn.execute(query)
    }


async def _save_checkpoint(conn: AsyncConnection, names: Sequence[str], position: int) -> None:
    if not names:
        return
    await conn.execute(
        checkpoints.update()
        .where(checkpoints.c.name.in_(names))
        .values(
            position=position,
            state=LIVE,
            error=None,
            error_position=None,
            updated_at=datetime.now(UTC),
        )
    )
