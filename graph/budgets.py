"""Budgets for what a client can make this process hold: open subscriptions and waiters, held
``atLeast`` reads, and waits for positions the store has not nearly reached.

Each is a plain counter checked before anything is held, so a refusal costs nothing. Per-socket
subscriptions are capped by strawberry itself (``max_subscriptions_per_connection``); this caps
the total over all sockets. All settings are in the README's table.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator

from graphql import GraphQLError


class Budgets:
    def __init__(
        self,
        *,
        max_subscriptions: int = 10_000,
        max_held_reads: int = 1_000,
        max_wait_ahead: int = 10_000,
    ) -> None:
        self.max_subscriptions = max_subscriptions
        self.max_held_reads = max_held_reads
        self.max_wait_ahead = max_wait_ahead
        self.subscriptions = 0
        self.held_reads = 0
        self._known_head = 0

    @contextlib.contextmanager
    def subscription(self) -> Iterator[None]:
        """Hold one of the process's subscriptions (caughtUp waiters included) while inside;
        a GraphQLError when all are taken."""
        if self.subscriptions >= self.max_subscriptions:
            raise GraphQLError(
                f"the server holds its maximum of {self.max_subscriptions} subscriptions;"
                " try again later"
            )
        self.subscriptions += 1
        try:
            yield
        finally:
            self.subscriptions -= 1

    @contextlib.contextmanager
    def held_read(self) -> Iterator[bool]:
        """True: this read may wait for its position. False: as many reads as allowed are
        waiting already, so answer at once (stale) rather than queue."""
        if self.held_reads >= self.max_held_reads:
            yield False
            return
        self.held_reads += 1
        try:
            yield True
        finally:
            self.held_reads -= 1

    async def check_reachable(self, position: int, head: Callable[[], Awaitable[int]]) -> None:
        """Refuse a wait for a position further beyond the store's head than the budget: no
        write of this store returned it, and waiting for it would hold memory for nothing.

        The head is read only when the position is beyond the last head seen by more than
        the budget, so a client's own tokens never cost a query here."""
        if position <= self._known_head + self.max_wait_ahead:
            return
        self._known_head = max(self._known_head, await head())
        if position > self._known_head + self.max_wait_ahead:
            raise GraphQLError(
                f"position {position} is beyond the event store's head ({self._known_head})"
                f" by more than {self.max_wait_ahead}: no write has returned it"
            )
