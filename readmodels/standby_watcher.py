"""Knowing when a standby has a projection position: read-your-writes through a replica.

A standby cannot LISTEN, and the primary's notification says only that the *primary* has a
position. But the checkpoints replicate in the same transactions as the rows they cover, so a
standby whose own checkpoint row says P shows everything up to P: the watcher reads the
standby's checkpoints, never an LSN. (That also holds when the projector's commits are
asynchronous locally, ``synchronous_commit = off``: what the standby has replayed is what it
shows, however the primary flushed it.)

One watcher per standby serves every waiter of that standby. It runs only while someone
waits: it reads the checkpoints, wakes whoever is satisfied, and then waits for the next
thing that can change the answer. Once the primary has announced a position a waiter needs
(``heard``), the standby will have it within its replay lag, so the watcher looks again soon,
1 ms after the announcement and then at slowly growing intervals up to ``max_poll``; before that it
only waits for announcements, re-reading on a slow back-off in case one was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.engines import reader
from readmodels.tables import checkpoints

FIRST_POLL = 0.001
MAX_POLL = 0.05
GROWTH = 1.25
SLOW_RECHECK = 0.5
MAX_SLOW_RECHECK = 5.0


@dataclass(eq=False)
class _Wait:
    names: frozenset[str]
    position: int
    done: asyncio.Future[bool] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class StandbyWatcher:
    def __init__(
        self,
        engine: AsyncEngine,
        heard: Mapping[str, int],
        names: Collection[str],
        *,
        first_poll: float = FIRST_POLL,
        max_poll: float = MAX_POLL,
    ) -> None:
        self._engine = reader(engine)
        self._heard = heard  # the primary's positions, as announced (kept by ReadTargets)
        self.names = tuple(names)
        self.first_poll = first_poll
        self.max_poll = max_poll
        self.known: dict[str, int] = {}  # the standby's checkpoints at the last read
        self.reads = 0  # checkpoint reads made for waiters (tests: no reads while idle)
        self._waits: list[_Wait] = []
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return len(self._waits)

    def poke(self) -> None:
        """The primary announced a position (or notifications may have been lost)."""
        if self._waits:
            self._poke.set()

    async def positions(self, names: Collection[str] | None = None) -> dict[str, int]:
        wanted = list(names or self.names)
        query = sa.select(checkpoints.c.name, checkpoints.c.position).where(
            checkpoints.c.name.in_(wanted)
        )
        async with self._engine.connect() as conn:
            found = {row.name: row.position for row in await conn.execute(query)}
        positions = {name: found.get(name, 0) for name in wanted}
        for name, at in positions.items():
            self.known[name] = max(self.known.get(name, 0), at)
        return positions

    async def wait_for(
        self, position: int, names: Collection[str] | None = None, within: float | None = 5.0
    ) -> bool:
        """True once the standby's checkpoints of ``names`` have reached ``position``; False
        after ``within`` seconds (None: no limit). A standby that cannot be read raises."""
        wanted = frozenset(names or self.names)
        if self._reached(wanted, position, self.known):
            return True  # positions on one standby only grow
        if within is not None and within <= 0:  # no wait: one look
            return self._reached(wanted, position, await self.positions(wanted))
        wait = _Wait(wanted, position)
        self._waits.append(wait)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch(), name="standby-watcher")
        else:
            self._poke.set()  # a new waiter: look now rather than at the next interval
        try:
            async with asyncio.timeout(within):
                return await asyncio.shield(wait.done)
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._waits.remove(wait)
            if wait.done.done():
                wait.done.exception()  # retrieved, even when nobody awaits it any more

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @staticmethod
    def _reached(names: Collection[str], position: int, at: Mapping[str, int]) -> bool:
        return all(at.get(name, 0) >= position for name in names)

    async def _watch(self) -> None:
        interval = self.first_poll
        slow = SLOW_RECHECK
        while self._waits:
            self._poke.clear()
            try:
                self.reads += 1
                found = await self.positions()
            except Exception as error:
                # The standby is away: every waiter hears it and goes elsewhere.
                for wait in self._waits:
                    if not wait.done.done():
                        wait.done.set_exception(error)
                self._waits.clear()
                return
            for wait in list(self._waits):
                if self._reached(wait.names, wait.position, found):
                    if not wait.done.done():
                        wait.done.set_result(True)
                    self._waits.remove(wait)
            if not self._waits:
                return
            due = any(self._reached(w.names, w.position, self._heard) for w in self._waits)
            timeout = interval if due else slow
            poked = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._poke.wait()
                    poked = True
            if poked:
                interval, slow = self.first_poll, SLOW_RECHECK
            elif due:
                # Slow growth: a standby's replay lag is a few ms, and an interval that
                # doubled from 1 ms would add its own few ms to most waits.
                interval = min(interval * GROWTH, self.max_poll)
            else:
                slow = min(slow * 2, MAX_SLOW_RECHECK)
