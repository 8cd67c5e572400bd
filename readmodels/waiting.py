"""Waiting until projections reach a position: the basis of read-your-writes.

Subscribe first, then read the checkpoints, then wait on notifications: an update published
between the read and the wait is still in the subscription, so no wake-up is lost. Idle
waiters cost a queue each, no polling; on timeout the checkpoints are read once more, so a
missed notification can delay an answer but never make it wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import reader
from readmodels.notifier import Notifier
from readmodels.tables import checkpoints


class CheckpointWaiter:
    def __init__(self, engine: AsyncEngine, notifier: Notifier, names: Collection[str]) -> None:
        self._engine = reader(engine)  # every query here is one statement, or may as well be
        self._notifier = notifier
        self.names = tuple(names)

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
        takes; the caller cancels)."""
        wanted = set(names or self.names)
        async with self._notifier.subscribe() as updates:
            current = await self.positions(wanted)
            pending = {name for name, at in current.items() if at < position}
            if not pending:
                return True
            try:
                async with asyncio.timeout(within):
                    async for update in updates:
                        if update.position >= position:
                            pending.discard(update.projection)
                        if not pending:
                            return True
            except TimeoutError:
                pass
        current = await self.positions(wanted)
        return all(at >= position for at in current.values())
