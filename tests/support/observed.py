"""The real checkpoint waiter, counting its reads, so a test knows when it read."""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncEngine

from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.messages import Notifier
from readmodels.waiting import CheckpointWaiter


class ObservedWaiter(CheckpointWaiter):
    def __init__(
        self,
        engine: AsyncEngine,
        notifier: Notifier,
        names: Collection[str] = PROJECTION_NAMES,
        **options: float,
    ) -> None:
        super().__init__(engine, notifier, names, **options)
        self.reads = 0
        self.read = asyncio.Event()

    async def positions(self, names: Collection[str] | None = None) -> dict[str, int]:
        found = await super().positions(names)
        self.reads += 1
        self.read.set()
        return found
