"""Blue/green: a new version of a projection is built in its own tables from the first event
while the active version keeps serving and keeping up, then switched to atomically.

A version being built has its own checkpoint (its row in ``projection_versions``); each batch
writes its tables and advances that checkpoint in one transaction, as the projector does for
the active version. Exactly one builder builds a version at a time, across processes: it
holds a lease on the version's row, renewed by every batch, and every batch first checks
under the row's lock that the lease is still its own. A builder that dies leaves the lease to
expire (at once, for one on the same machine whose process is gone); the next one resumes
from the version's checkpoint.

The switch happens when a batch reaches the head: in the same transaction the builder locks
the active version's checkpoint row (waiting for the projector's pass in flight), applies what
was appended meanwhile, and points the checkpoint at the new version and its position, which
is never below the old one's. Queries read the version on that row and waits follow its
position, so every replica sees the switch with its next read.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.eventstore.engines import write_transaction
from readmodels.feed import Batch, PoisonedEvent, read_stored_after
from readmodels.notifications.messages import Notifier, ProjectionUpdate
from readmodels.projection import Projection
from readmodels.stall_log import StallLog, short
from readmodels.tables import checkpoints, projection_skips, projection_versions
from readmodels.versions import create_indexes, create_tables, drop_tables, ensure_tables

log = logging.getLogger("ordergraph.projector")

BUILDING, ACTIVE, RETIRED, DROPPED = "building", "active", "retired", "dropped"
LIVE, FAILED = "live", "failed"
LEASE_SECONDS = 15.0
# The switch applies what was appended since the last batch while it holds the active
# checkpoint; under a write burst it gives up after this many reads and tries again later.
SWITCH_READS = 20

versions = projection_versions


def builder_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_gone(holder: str) -> bool:
    """True for a builder on this machine whose process has ended (its lease need not
    expire first)."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class BuildLost(Exception):
    """The lease went to another builder (or the version is no longer being built)."""


class BuildFailed(Exception):
    def __init__(self, name: str, version: int, position: int, cause: BaseException) -> None:
        super().__init__(
            f"version {version} of {name} failed at position {position}: {short(cause)}"
        )
        self.name, self.version, self.position, self.cause = name, version, position, cause


class _StepFailed(Exception):
    def __init__(self, position: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.position, self.cause = position, cause


Key = tuple[str, int]  # (projection, version)


@dataclass(frozen=True, slots=True)
class Step:
    applied: int  # events read
    positions: dict[Key, int]
    switched: list[Key]


def _now() -> datetime:
    return datetime.now(UTC)


async def version_rows(conn: AsyncConnection, name: str) -> list[Any]:
    query = sa.select(versions).where(versions.c.name == name).order_by(versions.c.version)
    return list((await conn.execute(query)).all())


async def _create_build(
    conn: AsyncConnection, projection: Projection, builder: str | None = None, lease: float = 0
) -> int:
    existing = await version_rows(conn, projection.name)
    active = (
        await conn.execute(
            sa.select(checkpoints.c.version).where(checkpoints.c.name == projection.name)
        )
    ).scalar_one_or_none()
    number = int(max([r.version for r in existing] + [active or 1])) + 1
    await create_tables(conn, projection.at(number).owned_tables())
    now = _now()
    await conn.execute(
        versions.insert().values(
            name=projection.name,
            version=number,
            code_version=projection.version,
            status=BUILDING,
            position=0,
            state=LIVE,
            created_at=now,
            updated_at=now,
            builder=builder,
            lease_until=None if builder is None else now + timedelta(seconds=lease),
        )
    )
    log.info("projection %s: building version %d from the first event", projection.name, number)
    return number


async def _lock_checkpoint(conn: AsyncConnection, name: str, *, skip_locked: bool = False) -> Any:
    query = (
        sa.select(checkpoints)
        .where(checkpoints.c.name == name)
        .with_for_update(skip_locked=skip_locked)
    )
    return (await conn.execute(query)).first()


async def ensure_versions(
    engine: AsyncEngine, projections: Sequence[Projection], *, skip_locked: bool = False
) -> list[str]:
    """Give each projection a checkpoint and an active version (version 1 on a new
    database) with its tables, and start building a new version of each one whose code
    version is newer than the active version's (a deploy changed it). With
    ``skip_locked``, those whose checkpoint another instance holds right now are left for
    later: returns their names."""
    later = []
    async with write_transaction(engine) as conn:
        for projection in projections:
            now = _now()
            exists = await conn.scalar(
                sa.select(checkpoints.c.name).where(checkpoints.c.name == projection.name)
            )
            checkpoint = await _lock_checkpoint(
                conn, projection.name, skip_locked=skip_locked and exists is not None
            )
            if checkpoint is None and exists is not None:
                later.append(projection.name)
                continue
            if checkpoint is None:
                await conn.execute(
                    checkpoints.insert().values(
                        name=projection.name,
                        position=0,
                        state=LIVE,
                        updated_at=now,
                        version=1,
                        code_version=projection.version,
                    )
                )
                checkpoint = await _lock_checkpoint(conn, projection.name)
            rows = {r.version: r for r in await version_rows(conn, projection.name)}
            if checkpoint.version not in rows:
                await conn.execute(
                    versions.insert().values(
                        name=projection.name,
                        version=checkpoint.version,
                        code_version=checkpoint.code_version,
                        status=ACTIVE,
                        position=0,
                        state=LIVE,
                        created_at=now,
                        updated_at=now,
                        activated_at=now,
                    )
                )
            await ensure_tables(conn, projection.at(checkpoint.version).owned_tables())
            if checkpoint.code_version >= projection.version:
                continue
            building = [r for r in rows.values() if r.status == BUILDING]
            if any(r.code_version >= projection.version for r in building):
                continue
            for old in building:  # built by code older than this: superseded
                await drop_tables(conn, projection.at(old.version).owned_tables())
                await conn.execute(
                    versions.update()
                    .where(versions.c.name == projection.name, versions.c.version == old.version)
                    .values(
                        status=DROPPED,
                        dropped_at=now,
                        updated_at=now,
                        note=f"superseded by code version {projection.version}",
                    )
                )
            await _create_build(conn, projection)
    return later


async def start_build(
    engine: AsyncEngine, projection: Projection, builder: Builder | None = None
) -> tuple[int, bool]:
    """Build a new version of the same code (``ordergraph rebuild``): returns its number and
    False, or the build of this code already under way and True (it resumes). A new one
    is leased to ``builder`` from the start, so that no projector takes it meanwhile."""
    async with write_transaction(engine) as conn:
        await _lock_checkpoint(conn, projection.name)
        for row in await version_rows(conn, projection.name):
            if row.status == BUILDING and row.code_version == projection.version:
                return row.version, True
        if builder is None:
            return await _create_build(conn, projection), False
        number = await _create_build(conn, projection, builder.identity, builder.lease_seconds)
    builder.leased(projection.name, number)
    return number, False


async def drop_retired(
    engine: AsyncEngine,
    projections: Iterable[Projection],
    *,
    older_than: float,
    names: Iterable[str] | None = None,
) -> list[tuple[str, int]]:
    """Drop the tables of versions retired at least ``older_than`` seconds ago."""
    by_name = {p.name: p for p in projections}
    wanted = list(by_name if names is None else names)
    cutoff = _now() - timedelta(seconds=older_than)
    dropped = []
    async with write_transaction(engine) as conn:
        query = sa.select(versions.c.name, versions.c.version).where(
            versions.c.status == RETIRED,
            versions.c.retired_at <= cutoff,
            versions.c.name.in_(wanted),
        )
        for name, number in (await conn.execute(query)).all():
            await drop_tables(conn, by_name[name].at(number).owned_tables())
            now = _now()
            await conn.execute(
                versions.update()
                .where(versions.c.name == name, versions.c.version == number)
                .values(status=DROPPED, dropped_at=now, updated_at=now)
            )
            dropped.append((name, number))
    for name, number in dropped:
        log.info("projection %s: dropped the tables of retired version %d", name, number)
    return dropped


StepObserver = Callable[[Step], None]


class Builder:
    """Builds versions of the given projections (those whose code version it has)."""

    def __init__(
        self,
        engine: AsyncEngine,
        projections: Sequence[Projection],
        notifier: Notifier,
        *,
        batch_size: int = 5000,
        lease_seconds: float = LEASE_SECONDS,
        identity: str | None = None,
    ) -> None:
        self._engine = engine
        self.projections = {p.name: p for p in projections}
        self._notifier = notifier
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.identity = identity or builder_identity()
        self.observers: list[StepObserver] = []
        self._held: set[tuple[str, int]] = set()
        self._stalls = StallLog(log)

    async def claim(self, name: str, version: int) -> str | None:
        """Take the lease; None when it is ours now, else who holds it."""
        now = _now()
        async with write_transaction(self._engine) as conn:
            query = (
                sa.select(versions.c.status, versions.c.builder, versions.c.lease_until)
                .where(versions.c.name == name, versions.c.version == version)
                .with_for_update()
            )
            row = (await conn.execute(query)).first()
            if row is None or row.status != BUILDING:
                raise BuildLost(f"version {version} of {name} is not being built")
            free = (
                row.builder is None
                or row.builder == self.identity
                or row.lease_until is None
                or row.lease_until < now
                or _holder_gone(row.builder)
            )
            if not free:
                return str(row.builder)
            await conn.execute(
                versions.update()
                .where(versions.c.name == name, versions.c.version == version)
                .values(builder=self.identity, lease_until=self._lease(now))
            )
        self._held.add((name, version))
        return None

    def leased(self, name: str, version: int) -> None:
        """A build was created with this builder's lease (start_build)."""
        self._held.add((name, version))

    def holds(self, name: str, version: int) -> bool:
        return (name, version) in self._held

    async def release(self) -> None:
        """Give up every lease held, so that another builder can go on at once."""
        for name, version in list(self._held):
            async with write_transaction(self._engine) as conn:
                await conn.execute(
                    versions.update()
                    .where(
                        versions.c.name == name,
                        versions.c.version == version,
                        versions.c.builder == self.identity,
                    )
                    .values(builder=None, lease_until=None)
                )
            self._held.discard((name, version))

    def _lease(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_seconds)

    async def step(self, *keys: Key) -> Step:
        """One batch of the builds together (each event read and decoded once), and the
        switch of each one at the head; raises BuildFailed at an event one of them cannot
        apply, after committing everything before it."""
        try:
            return await self._step(list(keys), self.batch_size)
        except _StepFailed:
            if len(keys) == 1 and self.batch_size == 1:
                failure = await self._isolate(keys[0])
                raise failure from failure.cause
        # Each on its own, so the healthy ones go on and the culprit is found and recorded.
        applied, positions, switched = 0, {}, []
        failures = []
        for key in keys:
            try:
                step = await self._step([key], self.batch_size)
            except _StepFailed:
                failures.append(await self._isolate(key))
                continue
            applied += step.applied
            positions.update(step.positions)
            switched += step.switched
        if failures:
            raise failures[0] from failures[0].cause
        return Step(applied, positions, switched)

    async def _isolate(self, key: Key) -> BuildFailed:
        """Commit one event at a time up to the one that fails; record it."""
        for _ in range(self.batch_size):
            try:
                step = await self._step([key], 1)
            except _StepFailed as failure:
                return await self._record_failure(*key, failure)
            if step.applied == 0:
                break
        return BuildFailed(*key, 0, RuntimeError("the failure did not happen again"))

    async def _step(self, keys: list[Key], limit: int) -> Step:
        started = time.perf_counter()
        async with write_transaction(self._engine) as conn:
            rows = {}
            for name, version in keys:
                query = (
                    sa.select(versions)
                    .where(versions.c.name == name, versions.c.version == version)
                    .with_for_update()
                )
                row = (await conn.execute(query)).first()
                if row is None or row.status != BUILDING or row.builder != self.identity:
                    self._held.discard((name, version))
                    raise BuildLost(f"version {version} of {name} is no longer built by us")
                rows[(name, version)] = row
            names = [name for name, _ in keys]
            skips: dict[str, set[int]] = {name: set() for name in names}
            query = sa.select(projection_skips.c.name, projection_skips.c.position).where(
                projection_skips.c.name.in_(names)
            )
            for skip in await conn.execute(query):
                skips[skip.name].add(skip.position)
            batch = await self._read(conn, min(r.position for r in rows.values()), limit)
            stored = batch.stored if batch is not None else []
            positions = {}
            for key, row in rows.items():
                projection = self.projections[key[0]].at(key[1])
                positions[key] = await self._apply(
                    conn, projection, row.position, batch, skips[key[0]]
                )
            applied = len(stored)
            switched = []
            if limit > 1 and len(stored) < limit:
                for key in keys:
                    projection = self.projections[key[0]].at(key[1])
                    await create_indexes(conn, projection.owned_tables())
                    done, extra, positions[key] = await self._switch(
                        conn, projection, key[1], positions[key], skips[key[0]]
                    )
                    applied += extra
                    if done:
                        switched.append(key)
            elapsed = max(time.perf_counter() - started, 1e-6)
            for key, row in rows.items():
                if key in switched:
                    continue
                rate = applied / elapsed if applied else row.rate
                if row.rate and rate:
                    rate = 0.7 * row.rate + 0.3 * rate
                await conn.execute(
                    versions.update()
                    .where(versions.c.name == key[0], versions.c.version == key[1])
                    .values(
                        position=positions[key],
                        state=LIVE,
                        error=None,
                        error_position=None,
                        rate=rate,
                        lease_until=self._lease(_now()),
                        updated_at=_now(),
                    )
                )
        result = Step(applied, positions, switched)
        for key in keys:
            self._stalls.running(key[0])
        for observer in self.observers:
            observer(result)
        for name, version in switched:
            self._held.discard((name, version))
            log.info(
                "projection %s: switched to version %d at %d",
                name,
                version,
                positions[(name, version)],
            )
            await self._announce(name, positions[(name, version)])
        return result

    async def _read(self, conn: AsyncConnection, after: int, limit: int) -> Batch | None:
        # In this step's transaction, not ahead of it on a connection of its own: decoding
        # the next batch on the loop while this one's writes ran made them wait for the
        # interpreter's lock, and the rebuild slower (docs/performance.md).
        stored = await read_stored_after(conn, after, limit)
        return Batch(stored) if stored else None

    async def _apply(
        self,
        conn: AsyncConnection,
        projection: Projection,
        after: int,
        batch: Batch | None,
        skipped: set[int],
    ) -> int:
        if batch is None or batch.last <= after:
            return after
        stored = batch.stored
        try:
            if envelopes := batch.for_projection(projection, after, skipped):
                await projection.apply(conn, envelopes)
        except PoisonedEvent as poisoned:
            raise _StepFailed(poisoned.position, poisoned) from poisoned
        except Exception as error:
            raise _StepFailed(stored[0].position, error) from error
        return batch.last

    async def _switch(
        self,
        conn: AsyncConnection,
        projection: Projection,
        number: int,
        position: int,
        skipped: set[int],
    ) -> tuple[bool, int, int]:
        """At the head: make this version the active one, in the caller's transaction.
        Returns (switched, events applied meanwhile, position)."""
        active = await _lock_checkpoint(conn, projection.name)  # waits for a pass in flight
        if active is None:
            return False, 0, position
        extra = 0
        for _ in range(SWITCH_READS):
            stored = await read_stored_after(conn, position, self.batch_size)
            if not stored:
                break
            position = await self._apply(conn, projection, position, Batch(stored), skipped)
            extra += len(stored)
        else:
            return False, extra, position  # still chasing the head: the next step tries again
        if position < active.position:
            return False, extra, position  # cannot happen: every committed event was read
        now = _now()
        name = projection.name
        await conn.execute(
            checkpoints.update()
            .where(checkpoints.c.name == name)
            .values(
                version=number,
                code_version=projection.version,
                position=position,
                state=LIVE,
                error=None,
                error_position=None,
                updated_at=now,
            )
        )
        await conn.execute(
            versions.update()
            .where(versions.c.name == name, versions.c.version == active.version)
            .values(
                status=RETIRED,
                position=active.position,
                state=active.state,
                error=active.error,
                error_position=active.error_position,
                retired_at=now,
                updated_at=now,
            )
        )
        await conn.execute(
            versions.update()
            .where(versions.c.name == name, versions.c.version == number)
            .values(
                status=ACTIVE,
                position=position,
                state=LIVE,
                error=None,
                error_position=None,
                builder=None,
                lease_until=None,
                activated_at=now,
                updated_at=now,
            )
        )
        return True, extra, position

    async def _announce(self, name: str, position: int) -> None:
        try:
            await self._notifier.publish_many([ProjectionUpdate(name, position)])
        except Exception as error:  # committed: waiters re-read the checkpoints anyway
            log.warning("could not announce the switch of %s: %r", name, error)

    async def _record_failure(self, name: str, version: int, failure: _StepFailed) -> BuildFailed:
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                versions.update()
                # Not over a skip of the event that landed since the step rolled back (as the
                # projector's failures: readmodels/projector.py).
                .where(
                    versions.c.name == name,
                    versions.c.version == version,
                    versions.c.position < failure.position,
                )
                .values(
                    state=FAILED,
                    error=short(failure.cause),
                    error_position=failure.position,
                    lease_until=self._lease(_now()),
                    updated_at=_now(),
                )
            )
        error = BuildFailed(name, version, failure.position, failure.cause)
        where = f"version {version} failed at position {failure.position}: {short(failure.cause)}"
        self._stalls.stalled(name, where, failure.cause)
        return error

    async def build(self, keys: Sequence[Key], progress: StepObserver | None = None) -> int:
        """Claim the versions and build them together until each is switched to; returns
        the events read. Raises BuildLost if another builder holds one, BuildFailed at an
        event that fails."""
        for key in keys:
            holder = await self.claim(*key)
            if holder is not None:
                raise BuildLost(f"version {key[1]} of {key[0]} is being built by {holder}")
        pending, total = list(keys), 0
        while pending:
            step = await self.step(*pending)
            total += step.applied
            if progress is not None:
                progress(step)
            pending = [key for key in pending if key not in step.switched]
        return total

    async def builds_to_do(self) -> dict[Key, str]:
        """Versions being built with this code, whoever holds them, with their state."""
        names = list(self.projections)
        async with self._engine.connect() as conn:
            query = sa.select(
                versions.c.name, versions.c.version, versions.c.code_version, versions.c.state
            ).where(versions.c.status == BUILDING, versions.c.name.in_(names))
            rows = (await conn.execute(query)).all()
        return {
            (r.name, r.version): r.state
            for r in rows
            if r.code_version == self.projections[r.name].version
        }
