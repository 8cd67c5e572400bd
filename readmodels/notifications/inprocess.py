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
import logging
from collections.abc import AsyncIterator, Sequence

from readmodels.notifications.messages import (
    Appended,
    Notification,
    Notifier,
    ProjectionUpdate,
)

log = logging.getLogger("ordergraph.notifier")


class AppendAnnouncer:
    """An ``EventStore.on_append`` listener that publishes the new head (``Appended``).

    At most one publish is in flight; heads that arrive meanwhile are folded into the next,
    so a burst of appends costs a NOTIFY or two, not one each."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier
        self._head = 0
        self._announced = 0
        self._task: asyncio.Task[None] | None = None

    def __call__(self, head: int) -> None:
        self._head = max(self._head, head)
        if self._task is None:
            self._task = asyncio.create_task(self._announce())

    async def _announce(self) -> None:
        try:
            while self._announced < self._head:
                head = self._head
                await self._notifier.publish(Appended(head))
                self._announced = head
        except Exception as error:
            # The appends are committed; the projector finds them at its next poll.
            log.warning("could not announce appends up to %d: %r", self._head, error)
        finally:
            self._task = None


class InProcessNotifier:
    """Fan-out to the subscribers of this process. A slow subscriber only ever needs the
    newest position per projection, so its queue keeps at most that and never grows."""

    def __init__(self) -> None:
        self._subscribers: set[_Mailbox] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    async def publish(self, update: Notification) -> None:
        self.deliver(update)

    async def publish_many(self, updates: Sequence[ProjectionUpdate]) -> None:
        for update in updates:
            self.deliver(update)

    def deliver(self, update: Notification) -> None:
        """Hand an update to local subscribers (also used by cross-process notifiers)."""
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
