"""What notifiers carry, and the interface every notifier has.

Three kinds of message, told apart by type: a projection reached a position (the basis of
read-your-writes), the event store's head moved (wakes projectors and the relay in other
processes), and "notifications may have been lost, look again" (after the cross-process
listener reconnects). Only ``ProjectionUpdate`` is ever shown to clients.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ProjectionUpdate:
    """The projection (or the relay, whose checkpoint is kept the same way) reached
    ``position``."""

    projection: str
    position: int


@dataclass(frozen=True, slots=True)
class Appended:
    """Events were appended up to ``position`` (in some process): something new to project."""

    position: int


@dataclass(frozen=True, slots=True)
class Resync:
    """Notifications may have gone unheard (the listener has just reconnected): re-read
    whatever you wait on. ``position`` counts reconnections; it only ever grows."""

    position: int


Notification = ProjectionUpdate | Appended | Resync


class Notifier(Protocol):
    async def publish(self, update: Notification) -> None:
        """Tell every subscriber, in every process this notifier reaches."""

    async def publish_many(self, updates: Sequence[ProjectionUpdate]) -> None:
        """``publish`` for several updates at once (one message where the transport can)."""

    def announce(self, updates: Sequence[ProjectionUpdate | Appended]) -> None:
        """``publish_many`` without waiting, for what has just committed: this process's
        subscribers have the updates on return; other processes hear them soon, with
        whatever is announced meanwhile folded into one message. A failure to tell them is
        logged, not raised (waiters elsewhere re-read the checkpoints)."""

    def reached(self, projection: str) -> int:
        """The highest position heard for ``projection`` in this process (0: none): a lower
        bound of its committed checkpoint."""

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Notification]]:
        """``async with notifier.subscribe() as updates: async for update in updates: ...``

        Subscribing costs one queue; leaving the block frees it.
        """
