"""Subscriptions: pushed by projection notifications, never by polling.

Each subscription holds one notifier subscription (a small queue) while it lives, and frees
it in ``finally`` when the client leaves.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

import strawberry
from graphql import GraphQLError

from domain.access import Action
from domain.eventstore.outages import once_more_after_outage
from graph.context import Context
from graph.permissions import allow, scope
from graph.queries import could_exist
from graph.runtime import metrics
from graph.types import CaughtUp, Order, Position, ProjectionUpdate
from integration.relay import RELAY_NAME
from readmodels.names import ORDER_VIEWS, PROJECTION_NAMES
from readmodels.notifications.messages import ProjectionUpdate as Advanced
from readmodels.notifications.messages import Resync

Info = strawberry.Info[Context, None]


# The integration relay is waited on like a projection, but only when named: it runs only
# where NATS_URL is set, and "all" must not wait for it where it does not.
KNOWN = (*PROJECTION_NAMES, RELAY_NAME)


def _names(projections: Sequence[str] | None) -> list[str]:
    names = list(PROJECTION_NAMES if projections is None else projections)
    unknown = sorted(set(names) - set(KNOWN))
    if unknown:
        raise GraphQLError(f"unknown projections {unknown}; known: {', '.join(KNOWN)}")
    return names


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Every checkpoint advance of the named projections.",
        extensions=[allow(Action.READ_PROGRESS)],
    )
    async def projection_updated(
        self, info: Info, projections: list[str] | None = None
    ) -> AsyncGenerator[ProjectionUpdate, None]:
        names = set(_names(projections))
        services = info.context.services
        sent: dict[str, int] = {}
        with metrics.OPEN_SUBSCRIPTIONS.track_inprogress(), services.budgets.subscription():
            async with services.notifier.subscribe() as updates:
                async for update in updates:
                    if isinstance(update, Resync):
                        # Advances may have gone unheard while the listener reconnected.
                        found = await once_more_after_outage(
                            lambda: services.waiter.positions(names)
                        )
                        missed = {n: p for n, p in found.items() if p > sent.get(n, 0)}
                    elif isinstance(update, Advanced) and update.projection in names:
                        missed = {update.projection: update.position}
                    else:
                        continue
                    for name, position in missed.items():
                        sent[name] = position
                        yield ProjectionUpdate(projection=name, position=Position(position))

    @strawberry.subscription(
        description="One event when every named projection (default: all) has reached the "
        "position, then completes. Emits at once if they are already there.",
        extensions=[allow(Action.READ_PROGRESS)],
    )
    async def caught_up(
        self,
        info: Info,
        position: Position,
        projections: list[str] | None = None,
    ) -> AsyncGenerator[CaughtUp, None]:
        names = _names(projections)
        services = info.context.services
        reads = services.reads
        with metrics.OPEN_SUBSCRIPTIONS.track_inprogress(), services.budgets.subscription():
            await services.budgets.check_reachable(position, services.queries.head_position)
            if reads.standbys:
                # Every standby this process reads has it: any query from here on sees it.
                await reads.wait_all(position, names)
            else:
                await services.waiter.wait_for(position, names, within=None)
        # The statuses are read only if the client selected them (CaughtUp.projections).
        yield CaughtUp(position=position, names=names)

    @strawberry.subscription(
        description="The order's view now (if it exists) and each time its row changes.",
        extensions=[allow(Action.READ_ORDERS)],
    )
    async def order_changed(self, info: Info, id: strawberry.ID) -> AsyncGenerator[Order, None]:
        services = info.context.services
        customer = scope(info)  # another customer's order never appears: as if it did not exist
        if services.order_changes is None:
            raise GraphQLError("orderChanged is not served by this process")
        if not could_exist(id):
            raise GraphQLError("no order can have this id")
        seen = 0
        # Routed by order id (readmodels/order_changes.py): an idle subscription costs no
        # read when other orders change. Routed views are read without a scope: each
        # subscriber keeps only those its caller may see. With standbys, both the first
        # read and the routed ones read a standby, the routed ones once it has the change.
        with metrics.OPEN_SUBSCRIPTIONS.track_inprogress(), services.budgets.subscription():
            async with services.order_changes.watch(str(id)) as watch:
                view, _, _ = await services.reads.read(
                    None, [ORDER_VIEWS], lambda q: q.order(str(id), scope=customer), within=None
                )
                if view is not None:
                    seen = view.last_position
                    yield Order.of(view)
                async for view in watch.views():
                    if customer is not None and view.customer_id != customer:
                        continue
                    if view.last_position > seen:
                        seen = view.last_position
                        yield Order.of(view)
