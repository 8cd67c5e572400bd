"""Notifications that a projection reached a position: the basis of read-your-writes.

The projector publishes after each checkpoint commit; subscribers (GraphQL subscriptions,
waiters) receive every update published after they subscribed. ``InProcessNotifier`` fans out
inside one process; readmodels/notifications/postgres.py carries the same interface across
processes through PostgreSQL LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Sequence

from readmodels.notifications.messages import (
    Appended,
    Notification,
    ProjectionUpdate,
)


class InProcessNotifier:
    """Fan-out to the subscribers of this process. A slow subscriber only ever needs the
    newest position per projection, so its queue keeps at most that and never grows."""

    def __init__(self) -> None:
        self._subscribers: set[_Mailbox] = set()
        self._reached: dict[str, int] = {}

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def reached(self, projection: str) -> int:
        """The highest position this process has heard ``projection`` reach (0: none yet).

        Updates are published only after their checkpoint committed, and an active
        checkpoint never moves back, so this is a lower bound of the checkpoint: a wait
        for a position at or below it is over without reading anything."""
        return self._reached.get(projection, 0)

    async def publish(self, update: Notification) -> None:
        self.deliver(update)

    async def publish_many(self, updates: Sequence[ProjectionUpdate]) -> None:
        for update in updates:
            self.deliver(update)

    def announce(self, updates: Sequence[ProjectionUpdate | Appended]) -> None:
        for update in updates:
            self.deliver(update)

    def deliver(self, update: Notification) -> None:
        """Hand an update to local subscribers (also used by cross-process notifiers)."""
        if isinstance(update, ProjectionUpdate):
            name = update.projection
            self._reached[name] = max(self._reached.get(name, 0), update.position)
        for mailbox in self._subscribers:
            mailbox.put(update)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Notification]]:
        mailbox = _Mailbox()
        self._subscribers.add(mailbox)
        try:
            yield mailbox.updates()
        finally:
            self._subscribers.discard(mailbox)


class _Mailbox:
    """The latest message per projection (and per other kind) not yet taken by the
    subscriber."""

    def __init__(self) -> None:
        self._latest: dict[object, Notification] = {}
        self._ready = asyncio.Event()

    def put(self, update: Notification) -> None:
        key = update.projection if isinstance(update, ProjectionUpdate) else type(update)
        held = self._latest.get(key)
        if held is None or update.position > held.position:
            self._latest[key] = update
            self._ready.set()

    def updates(self) -> _Updates:
        return _Updates(self)

    def take(self) -> list[Notification]:
        self._ready.clear()
        latest, self._latest = self._latest, {}
        return list(latest.values())


class _Updates:
    """The subscriber's iterator. Not an async generator on purpose: a waiter stops waiting
    for the next update on a timeout (``asyncio.timeout``), and cancelling a generator's
    ``__anext__`` would close the generator; cancelling this loses nothing."""

    def __init__(self, mailbox: _Mailbox) -> None:
        self._mailbox = mailbox
        self._taken: collections.deque[Notification] = collections.deque()

    def __aiter__(self) -> _Updates:
        return self

    async def __anext__(self) -> Notification:
        while not self._taken:
            await self._mailbox._ready.wait()
            self._taken.extend(self._mailbox.take())
        return self._taken.popleft()
