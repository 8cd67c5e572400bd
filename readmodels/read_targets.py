"""Where queries are read: PostgreSQL standbys (``READ_DATABASE_URLS``) in turn, or the primary.

Which *target* answers is all this module decides; which tables a query reads stays with the
query handlers (``ReadModelQueries``), built once per target.

A standby is in use while it answers and its replay lag is within ``max_lag_seconds``: a
health check reads each one every ``check_interval`` seconds (one cheap statement), and a read
that finds it unreachable takes it out at once; the next good check puts it back. With no
standby in use, reads go to the primary if ``primary_fallback`` allows, and are otherwise a
database outage (503, retry).

The primary's positions, as its notifications announce them (``heard``), tell each standby's
watcher when a position it waits for exists (readmodels/standby_watcher.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.engines import reader
from domain.eventstore.outages import is_outage
from readmodels.notifications.messages import Notifier, ProjectionUpdate, Resync
from readmodels.queries import ReadModelQueries
from readmodels.standby_watcher import StandbyWatcher
from readmodels.waiting import CheckpointWaiter

log = logging.getLogger("ordergraph.reads")

T = TypeVar("T")

_RECOVERY_CONFLICT = "conflict with recovery"

# One statement: replay lag in seconds (0 when everything received is replayed: an idle
# primary is not lag), and whether the server is still a standby.
_LAG = sa.text(
    "SELECT pg_is_in_recovery() AS standby,"
    " CASE WHEN NOT pg_is_in_recovery()"
    "  OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)"
    " END AS lag_seconds"
)


class NoReadTarget(ConnectionError):
    """No standby is in use and the primary may not be read: an outage (503, retry)."""


def is_replay_conflict(error: BaseException) -> bool:
    """A standby cancelled the statement (or ended the session) to let replay go on."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        cause = todo.pop()
        if cause is None or any(cause is s for s in seen):
            continue
        seen.append(cause)
        if _RECOVERY_CONFLICT in str(cause):
            return True
        todo += [cause.__cause__, cause.__context__, getattr(cause, "orig", None)]
    return False


@dataclass(frozen=True, slots=True)
class TargetStatus:
    target: str
    position: int | None  # None: could not be read
    lag: int | None  # events behind what the primary has announced
    lag_seconds: float | None
    in_use: bool


class ReadTarget:
    """One database that answers queries: the primary, or a standby."""

    def __init__(
        self, name: str, engine: AsyncEngine, waiter: CheckpointWaiter | StandbyWatcher
    ) -> None:
        self.name = name
        self.engine = engine
        self.queries = ReadModelQueries(engine)
        self.waiter = waiter
        self.is_standby = isinstance(waiter, StandbyWatcher)
        self.in_use = True
        self.reachable = True
        self.lag_seconds: float | None = 0.0

    async def wait_for(self, position: int, names: Collection[str], within: float | None) -> bool:
        return await self.waiter.wait_for(position, names, within=within)

    async def positions(self, names: Collection[str]) -> dict[str, int]:
        return await self.waiter.positions(names)


class ReadTargets:
    def __init__(
        self,
        primary: AsyncEngine,
        standbys: Sequence[tuple[str, AsyncEngine]],
        notifier: Notifier,
        names: Collection[str],
        *,
        primary_fallback: bool = True,
        max_lag_seconds: float = 30.0,
        check_interval: float = 1.0,
        check_timeout: float = 2.0,
    ) -> None:
        self.names = tuple(names)
        self.heard: dict[str, int] = {}
        self.primary = ReadTarget("primary", primary, CheckpointWaiter(primary, notifier, names))
        self.standbys = [
            ReadTarget(name, engine, StandbyWatcher(engine, self.heard, names))
            for name, engine in standbys
        ]
        self._notifier = notifier
        self.primary_fallback = primary_fallback
        self.max_lag_seconds = max_lag_seconds
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self._turn = itertools.count()
        self._tasks: list[asyncio.Task[None]] = []
        self.retries = 0  # reads sent to a second target after the first failed
        self.on_retry: Callable[[], None] | None = None

    @property
    def targets(self) -> list[ReadTarget]:
        """What this process reads: its standbys, or the primary when it has none."""
        return self.standbys or [self.primary]

    async def start(self) -> None:
        if not self.standbys:
            return
        subscribed = asyncio.Event()
        self._tasks.append(asyncio.create_task(self._hear(subscribed), name="reads-heard"))
        await subscribed.wait()
        with contextlib.suppress(Exception):  # the health checks keep trying
            self.heard.update(await self.primary.positions(self.names))
        await self.check()
        self._tasks.append(asyncio.create_task(self._check_forever(), name="reads-health"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for target in self.standbys:
            assert isinstance(target.waiter, StandbyWatcher)
            await target.waiter.close()

    def pick(self) -> ReadTarget:
        """The next standby in use, in turn; else the primary if allowed."""
        if not self.standbys:
            return self.primary
        in_use = [t for t in self.standbys if t.in_use]
        if in_use:
            return in_use[next(self._turn) % len(in_use)]
        if self.primary_fallback:
            return self.primary
        raise NoReadTarget("no read target is in use (READ_PRIMARY_FALLBACK=false)")

    def instead_of(self, failed: ReadTarget, error: BaseException) -> ReadTarget | None:
        """Where to retry a read that ``failed`` could not answer (None: do not retry).
        An unreachable standby is left out until its next good health check."""
        if not failed.is_standby or not (is_outage(error) or is_replay_conflict(error)):
            return None
        if not is_replay_conflict(error) and failed.in_use:
            failed.in_use = failed.reachable = False
            log.warning("read target %s left out: %s", failed.name, _first_line(error))
        self.retries += 1
        if self.on_retry is not None:
            self.on_retry()
        if self.primary_fallback:
            return self.primary
        others = [t for t in self.standbys if t.in_use and t is not failed]
        return others[0] if others else None

    async def read(
        self,
        at_least: int | None,
        names: Collection[str],
        read: Callable[[ReadModelQueries], Awaitable[T]],
        *,
        within: float | None,
        target: ReadTarget | None = None,
    ) -> tuple[T, ReadTarget, bool]:
        """Wait (bounded by ``within``) until a target has ``at_least``, then ``read`` there;
        once more elsewhere if that target fails. Returns the value, who answered, and
        whether the position was reached (False: the answer may be older: stale)."""
        target = target or self.pick()
        try:
            return await self._read_at(target, at_least, names, read, within)
        except Exception as error:
            other = self.instead_of(target, error)
            if other is None:
                raise
            return await self._read_at(other, at_least, names, read, within)

    async def _read_at(
        self,
        target: ReadTarget,
        at_least: int | None,
        names: Collection[str],
        read: Callable[[ReadModelQueries], Awaitable[T]],
        within: float | None,
    ) -> tuple[T, ReadTarget, bool]:
        reached = True
        if at_least is not None:
            reached = await target.wait_for(at_least, names, within)
        return await read(target.queries), target, reached

    async def wait_all(self, position: int, names: Collection[str]) -> None:
        """Until every read target in use has ``position`` (caughtUp). A standby that goes
        away meanwhile is not waited for; with none left, the primary is."""
        waiting = [t for t in self.standbys if t.in_use]
        results = await asyncio.gather(
            *(t.wait_for(position, names, None) for t in waiting), return_exceptions=True
        )
        answered = False
        for target, result in zip(waiting, results, strict=True):
            if not isinstance(result, BaseException):
                answered = True
            elif isinstance(result, Exception) and (
                is_outage(result) or is_replay_conflict(result)
            ):
                self.instead_of(target, result)  # leaves it out; it is not waited for
            else:
                raise result
        if not answered:
            await self.primary.wait_for(position, names, None)

    async def check(self) -> None:
        """Read every standby's lag now; put it in use or leave it out."""
        await asyncio.gather(*(self._check(t) for t in self.standbys))

    def statuses(self, name: str) -> list[TargetStatus]:
        """Each standby's position and lag for one projection, as last read."""
        found = []
        for target in self.standbys:
            assert isinstance(target.waiter, StandbyWatcher)
            known = target.waiter.known.get(name)
            heard = self.heard.get(name)
            lag = None if known is None or heard is None else max(heard - known, 0)
            found.append(TargetStatus(target.name, known, lag, target.lag_seconds, target.in_use))
        return found

    async def _check(self, target: ReadTarget) -> None:
        try:
            async with asyncio.timeout(self.check_timeout):
                async with reader(target.engine).connect() as conn:
                    row = (await conn.execute(_LAG)).one()
                await target.positions(self.names)
        except Exception as error:
            target.reachable, target.lag_seconds = False, None
            if target.in_use:
                log.warning("read target %s left out: %s", target.name, _first_line(error))
            target.in_use = False
            return
        target.reachable = True
        target.lag_seconds = round(float(row.lag_seconds), 3)
        in_use = target.lag_seconds <= self.max_lag_seconds
        if in_use != target.in_use:
            if in_use:
                log.info("read target %s in use again", target.name)
            else:
                log.warning(
                    "read target %s left out: %.1f s behind (READ_MAX_LAG_SECONDS=%g)",
                    target.name,
                    target.lag_seconds,
                    self.max_lag_seconds,
                )
        target.in_use = in_use

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            await self.check()

    async def _hear(self, subscribed: asyncio.Event) -> None:
        async with self._notifier.subscribe() as updates:
            subscribed.set()
            async for update in updates:
                if isinstance(update, Resync):
                    with contextlib.suppress(Exception):
                        self.heard.update(await self.primary.positions(self.names))
                elif isinstance(update, ProjectionUpdate):  # any checkpoint, the relay's too
                    self.heard[update.projection] = max(
                        self.heard.get(update.projection, 0), update.position
                    )
                else:
                    continue
                for target in self.standbys:
                    assert isinstance(target.waiter, StandbyWatcher)
                    target.waiter.poke()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
