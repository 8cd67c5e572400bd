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
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("ordergraph.notifier")


@dataclass(frozen=True, slots=True)
class ProjectionUpdate:
    projection: str
    position: int


# Not a projection: "the event store's head reached this position". Lets a projector in one
# process wake at once for appends made in another (see AppendAnnouncer).
APPENDED = "$appended"
# Not a projection either: "notifications may have been lost (the cross-process listener has
# just reconnected); re-read whatever you are waiting on". Its position only ever grows.
RESYNC = "$resync"


class AppendAnnouncer:
    """An ``EventStore.on_append`` listener that publishes the new head as ``APPENDED``.

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
                await self._notifier.publish(ProjectionUpdate(APPENDED, head))
                self._announced = head
        except Exception as error:
            # The appends are committed; the projector finds them at its next poll.
            log.warning("could not announce appends up to %d: %r", self._head, error)
        finally:
            self._task = None


class Notifier(Protocol):
    async def publish(self, update: ProjectionUpdate) -> None:
        """Tell every subscriber, in every process this notifier reaches."""

    async def publish_many(self, updates: Sequence[ProjectionUpdate]) -> None:
        """``publish`` for several updates at once (one message where the transport can)."""

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

    async def publish_many(self, updates: Sequence[ProjectionUpdate]) -> None:
        for update in updates:
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

    def updates(self) -> _Updates:
        return _Updates(self)

    def take(self) -> dict[str, int]:
        self._ready.clear()
        latest, self._latest = self._latest, {}
        return latest


class _Updates:
    """The subscriber's iterator. Not an async generator on purpose: a waiter stops waiting
    for the next update on a timeout (``asyncio.timeout``), and cancelling a generator's
    ``__anext__`` would close the generator; cancelling this loses nothing."""

    def __init__(self, mailbox: _Mailbox) -> None:
        self._mailbox = mailbox
        self._taken: collections.deque[ProjectionUpdate] = collections.deque()

    def __aiter__(self) -> _Updates:
        return self

    async def __anext__(self) -> ProjectionUpdate:
        while not self._taken:
            await self._mailbox._ready.wait()
            self._taken.extend(
                ProjectionUpdate(projection, position)
                for projection, position in self._mailbox.take().items()
            )
        return self._taken.popleft()
