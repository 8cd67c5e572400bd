"""Notifications that a projection reached a position: the basis of read-your-writes.

The projector publishes after each checkpoint commit; subscribers (GraphQL subscriptions,
waiters) receive every update published after they subscribed. ``InProcessNotifier`` fans out
inside one process; graph/pg_notifier.py carries the same interface across processes through
PostgreSQL LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ProjectionUpdate:
    projection: str
    position: int


class Notifier(Protocol):
    async def publish(self, update: ProjectionUpdate) -> None:
        """Tell every subscriber, in every process this notifier reaches."""

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[ProjectionUpdate]]:
        """``async with notifier.subscribe() as updates: async for update in updates: ...``

        Subscribing costs one queue; leaving the block frees it.
        """


class InProcessNotifier:
    """Fan-out to the subscribers of this process. A slow subscriber only ever needs the
    newest position per projection, so its queue keeps at most that and never grows."""

    def __init__(self) -> None:
        self._subscribers: set[_Mailbox] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def publish(self, update: ProjectionUpdate) -> None:
        self.deliver(update)

    def deliver(self, update: ProjectionUpdate) -> None:
        """Hand an update to local subscribers (also used by cross-process notifiers)."""
        for mailbox in self._subscribers:
            mailbox.put(update)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[ProjectionUpdate]]:
        mailbox = _Mailbox()
        self._subscribers.add(mailbox)
        try:
            yield mailbox.updates()
        finally:
            self._subscribers.discard(mailbox)


class _Mailbox:
    """Latest position per projection not yet taken by the subscriber."""

    def __init__(self) -> None:
        self._latest: dict[str, int] = {}
        self._ready = asyncio.Event()

    def put(self, update: ProjectionUpdate) -> None:
        if update.position > self._latest.get(update.projection, -1):
            self._latest[update.projection] = update.position
            self._ready.set()

    async def updates(self) -> AsyncIterator[ProjectionUpdate]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            latest, self._latest = self._latest, {}
            for projection, position in latest.items():
                yield ProjectionUpdate(projection, position)
