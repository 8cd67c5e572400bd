"""Waiting until projections reach a position: the basis of read-your-writes.

Subscribe first, then read the checkpoints, then wait on notifications: an update published
between the read and the wait is still in the subscription, so no wake-up is lost in this
process. Across processes notifications can be lost (the listener reconnects after a
database restart, and NOTIFYs sent meanwhile are gone), so a waiter never depends on one: it
re-reads the checkpoints when the notifier says it reconnected (``Resync``), and on a bounded
back-off while it waits. Idle waiters cost a queue each and an occasional read.

A wait for a position this process has already heard a projection reach is over at once,
with no read: the common case of a client reading its own write, and with inline projections
nearly every case.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.engines import reader
from domain.eventstore.outages import is_outage, once_more_after_outage
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.messages import Notification, Notifier, ProjectionUpdate, Resync
from readmodels.tables import checkpoints

log = logging.getLogger("ordergraph.waiting")

# Re-reads while a wait lasts: after 0.5 s, then twice as long each time, at most every 5 s.
FIRST_RECHECK = 0.5
MAX_RECHECK = 5.0

# Whose heard positions a wait may trust: an active projection's checkpoint never moves back.
# The relay's does (``ordergraph relay --from``), so waits on it always read.
_NEVER_BACK = frozenset(PROJECTION_NAMES)


class CheckpointWaiter:
    def __init__(
        self,
        engine: AsyncEngine,
        notifier: Notifier,
        names: Collection[str],
        *,
        first_recheck: float = FIRST_RECHECK,
        max_recheck: float = MAX_RECHECK,
    ) -> None:
        self._engine = reader(engine)  # every query here is one statement, or may as well be
        self._notifier = notifier
        self.names = tuple(names)
        self.first_recheck = first_recheck
        self.max_recheck = max_recheck

    async def positions(self, names: Collection[str] | None = None) -> dict[str, int]:
        wanted = list(names or self.names)
        query = sa.select(checkpoints.c.name, checkpoints.c.position).where(
            checkpoints.c.name.in_(wanted)
        )
        async with self._engine.connect() as conn:
            found: dict[str, int] = {row.name: row.position for row in await conn.execute(query)}
        return {name: found.get(name, 0) for name in wanted}

    async def wait_for(
        self, position: int, names: Collection[str] | None = None, within: float | None = 5.0
    ) -> bool:
        """True once every named projection (default: all) has reached ``position``;
        False if that did not happen within ``within`` seconds (None: wait as long as it
        takes, database outages included; the caller cancels)."""
        wanted = set(names or self.names)
        if self.heard(position, wanted):
            return True
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        async with self._notifier.subscribe() as updates:
            if deadline is None:
                # A subscription (caughtUp) waits through an outage rather than failing.
                pending = await self._recheck(wanted, position, wanted)
            else:
                pending = await self._behind(wanted, position)
            recheck = self.first_recheck
            while pending:
                timeout = recheck if deadline is None else min(recheck, deadline - loop.time())
                if timeout <= 0:
                    break
                update = await _next_within(updates, timeout)
                if update is None:  # quiet for a while: a notification may have been lost
                    recheck = min(recheck * 2, self.max_recheck)
                    pending = await self._recheck(wanted, position, pending)
                elif isinstance(update, Resync):
                    pending = await self._recheck(wanted, position, pending)
                elif isinstance(update, ProjectionUpdate) and update.position >= position:
                    pending.discard(update.projection)
            if not pending:
                return True
        return not await self._behind(wanted, position)

    def heard(self, position: int, names: Collection[str]) -> bool:
        """Whether this process has heard every one of ``names`` reach ``position``."""
        reached = self._notifier.reached
        return all(name in _NEVER_BACK and reached(name) >= position for name in names)

    async def _behind(self, names: Collection[str], position: int) -> set[str]:
        return {name for name, at in (await self.positions(names)).items() if at < position}

    async def _recheck(
        self, names: Collection[str], position: int, pending: Collection[str]
    ) -> set[str]:
        try:
            behind = await once_more_after_outage(lambda: self._behind(names, position))
            return behind & set(pending)
        except Exception as error:
            if not is_outage(error):
                raise
            # The database is away: keep waiting; the next re-check or Resync looks again.
            log.debug("re-reading checkpoints failed: %r", error)
            return set(pending)


async def _next_within(updates: AsyncIterator[Notification], seconds: float) -> Notification | None:
    try:
        async with asyncio.timeout(seconds):
            return await anext(updates)
    except TimeoutError:
        return None
