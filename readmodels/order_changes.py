"""Routes order-view changes to the ``orderChanged`` subscribers of each order.

Without it every subscriber re-read its order on every ``order_views`` advance, so idle
subscriptions on orders nobody changes cost a SELECT each per write. Here one task per process
follows the ``order_views`` notifications: while nobody watches it only remembers the position;
while someone does, it asks once which orders changed in the positions just passed (an
indexed range on ``last_position``), and reads only the watched ones among them, once each,
whatever the number of their watchers.

A watcher registers before it reads its order for the first time, so a change is either in
that first read or routed to it afterwards; it drops views that are not newer than the last
one it sent. A read that fails leaves the position where it was: the next advance covers the
positions again. After a reconnect of the notifier (``Resync``), every watched order is read once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from domain.eventstore.outages import once_more_after_outage
from readmodels.names import ORDER_VIEWS
from readmodels.notifications.messages import Notifier, ProjectionUpdate, Resync
from readmodels.queries import OrderView, ReadModelQueries
from readmodels.read_targets import ReadTargets
from readmodels.waiting import CheckpointWaiter

log = logging.getLogger("ordergraph.projector")

RESTART_DELAY = 1.0  # seconds before following changes again after a failure


class OrderWatch:
    """The newest view routed to one subscriber and not yet taken (never more than one)."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        self._latest: OrderView | None = None
        self._ready = asyncio.Event()

    def put(self, view: OrderView) -> None:
        if self._latest is None or view.last_position > self._latest.last_position:
            self._latest = view
            self._ready.set()

    async def views(self) -> AsyncIterator[OrderView]:
        while True:
            await self._ready.wait()
            self._ready.clear()
            view, self._latest = self._latest, None
            if view is not None:
                yield view


class OrderChanges:
    def __init__(
        self,
        queries: ReadModelQueries,
        notifier: Notifier,
        waiter: CheckpointWaiter,
        reads: ReadTargets | None = None,
    ) -> None:
        self._queries = queries
        # With standbys (READ_DATABASE_URLS) changes are read on one once it has them.
        self._reads = reads if reads is not None and reads.standbys else None
        self._notifier = notifier
        self._waiter = waiter
        self._watches: dict[str, set[OrderWatch]] = {}
        self._task: asyncio.Task[None] | None = None
        self.reads = 0  # order views read to route changes (a test counts them)

    @property
    def watched(self) -> int:
        return len(self._watches)

    async def start(self) -> None:
        """Returns once changes are followed; raises what stopped the first attempt."""
        subscribed = asyncio.Event()
        self._task = asyncio.create_task(self._supervise(subscribed), name="order-changes")
        ready = asyncio.create_task(subscribed.wait())
        await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not subscribed.is_set():
            ready.cancel()
            task, self._task = self._task, None
            task.result()  # the exception that stopped it
            raise RuntimeError("orderChanged routing ended before it started")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.asynccontextmanager
    async def watch(self, order_id: str) -> AsyncIterator[OrderWatch]:
        watch = OrderWatch(order_id)
        self._watches.setdefault(order_id, set()).add(watch)
        try:
            yield watch
        finally:
            watchers = self._watches.get(order_id)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._watches[order_id]

    async def _supervise(self, subscribed: asyncio.Event) -> None:
        """Follows changes for the life of the process: a failure is logged and followed by a
        fresh start, never by silence for every subscriber."""
        while True:
            try:
                await self._run(subscribed, resync=subscribed.is_set())
            except Exception:
                if not subscribed.is_set():
                    raise  # start() reports it
                log.exception("orderChanged: routing failed; starting again")
                await asyncio.sleep(RESTART_DELAY)

    async def _run(self, subscribed: asyncio.Event, *, resync: bool = False) -> None:
        async with self._notifier.subscribe() as updates:
            seen = (await self._waiter.positions([ORDER_VIEWS]))[ORDER_VIEWS]
            subscribed.set()
            if resync:  # changes made while nothing followed them: read every watched order
                seen = await self._resync(seen)
            async for update in updates:
                if isinstance(update, Resync):
                    seen = await self._resync(seen)
                    continue
                if not isinstance(update, ProjectionUpdate) or update.projection != ORDER_VIEWS:
                    continue
                if update.position <= seen:
                    seen = update.position  # a rebuild started over: follow it down
                    continue
                if self._watches:
                    try:
                        await self._route(seen, update.position)
                    except Exception:
                        log.exception("orderChanged: routing changes up to %d", update.position)
                        continue
                seen = update.position

    async def _resync(self, seen: int) -> int:
        """Notifications may have been lost (the listener reconnected): read where order_views
        is, then every watched order once, so nothing that changed meanwhile is missed."""
        try:
            now = await once_more_after_outage(lambda: self._waiter.positions([ORDER_VIEWS]))
            for order_id in list(self._watches):
                view = await once_more_after_outage(
                    functools.partial(self._queries.order, order_id)
                )
                self.reads += 1
                for watch in list(self._watches.get(order_id, ())):
                    if view is not None:
                        watch.put(view)
        except Exception:
            log.exception("orderChanged: re-reading watched orders after a reconnect")
            return seen
        return now[ORDER_VIEWS]

    async def _route(self, after: int, upto: int) -> None:
        if self._reads is None:
            found = await self._changed(self._queries, after, upto)
        else:
            # The standby that reads them has the changes up to ``upto`` first: the views
            # pushed are the standby's, and a query after them sees as much.
            found, _, _ = await self._reads.read(
                upto,
                [ORDER_VIEWS],
                functools.partial(self._changed, after=after, upto=upto),
                within=None,
            )
        for order_id, view in found.items():
            self.reads += 1
            if view is not None:
                for watch in list(self._watches.get(order_id, ())):
                    watch.put(view)

    async def _changed(
        self, queries: ReadModelQueries, after: int, upto: int
    ) -> dict[str, OrderView | None]:
        """The watched orders among those changed in (after, upto], read once each."""
        changed = await queries.changed_orders(after, upto)
        return {
            order_id: await queries.order(order_id)
            for order_id in changed
            if self._watches.get(order_id)
        }
