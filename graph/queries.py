"""Queries: answered from projection tables only, through the read-model query handlers.

``atLeast`` asks that the projection behind a field has reached a position (the ``position``
a mutation returned) before the field is answered: read-your-writes. The wait is bounded; on
timeout the field is answered with what there is and the response says so in ``extensions``.
A wrong argument is a GraphQLError (shown to the client); anything else raised is masked.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import date as Date
from typing import Annotated, TypeVar

import strawberry
from graphql import GraphQLError

from domain.access import Action
from domain.limits import id_problem
from domain.order import OrderStatus
from graph.context import Context
from graph.permissions import allow, scope
from graph.runtime import metrics
from graph.types import (
    Count,
    CustomerConnection,
    CustomerSummary,
    DailySales,
    Order,
    OrderConnection,
    Position,
    ProjectionStatus,
)
from readmodels.names import CUSTOMER_SUMMARIES, DAILY_SALES, ORDER_VIEWS, PROJECTION_NAMES
from readmodels.queries import InvalidCursor, ReadModelQueries

Info = strawberry.Info[Context, None]
MAX_DAYS = 366
T = TypeVar("T")


async def answer(
    info: Info,
    at_least: int | None,
    projections: Sequence[str],
    read: Callable[[ReadModelQueries], Awaitable[T]],
) -> T:
    """Wait (bounded) until the read target has the projections at ``at_least``, then read
    there; record the field as stale if they did not get there in time. A standby that
    fails (unreachable, or a replay conflict cancelled the read) is replaced once."""
    services = info.context.services
    started = time.perf_counter()
    if at_least is None:
        value, target, _ = await services.reads.read(
            None, projections, read, within=None, target=info.context.read_target
        )
        info.context.read_target = target
        return value
    await services.budgets.check_reachable(at_least, services.queries.head_position)
    with services.budgets.held_read() as may_wait:
        # Without a held read left in the budget: no wait, only a look (within 0).
        with metrics.READ_WAITERS.track_inprogress() if may_wait else _no_gauge():
            value, target, done = await services.reads.read(
                at_least,
                projections,
                read,
                within=services.read_wait_seconds if may_wait else 0,
                target=info.context.read_target,
            )
        if may_wait:
            metrics.READ_WAITS.labels("reached" if done else "timeout").inc()
            metrics.READ_WAIT_SECONDS.observe(time.perf_counter() - started)
    info.context.read_target = target
    if not done:
        info.context.stale.append(
            {
                "field": info.path.key,
                "atLeast": at_least,
                "positions": await target.positions(projections),
                # "busy": as many reads as the budget allows were already waiting
                "reason": "timeout" if may_wait else "busy",
            }
        )
    return value


@contextlib.contextmanager
def _no_gauge() -> Iterator[None]:
    yield


def could_exist(id: str) -> bool:
    """Whether an id could name anything stored (the edge accepts no other): a query for one
    that cannot answers "not found" without a trip to the database, which may refuse its
    characters (PostgreSQL and NUL)."""
    return id_problem(id) is None


def _page_size(first: int | None) -> int:
    if first is not None and not 0 <= first <= 100:
        raise GraphQLError("first must be between 0 and 100")
    return 20 if first is None else first


@strawberry.type
class Query:
    @strawberry.field(
        description="One order's view, or null if no such order is projected (or it is "
        "another customer's).",
        extensions=[allow(Action.READ_ORDERS)],
    )
    async def order(
        self,
        info: Info,
        id: strawberry.ID,
        at_least: Position | None = None,
    ) -> Order | None:
        if not could_exist(id):
            return None
        customer = scope(info)
        view = await answer(
            info, at_least, [ORDER_VIEWS], lambda q: q.order(str(id), scope=customer)
        )
        return None if view is None else Order.of(view)

    @strawberry.field(
        description="Orders, newest first, optionally by customer and status (a customer's "
        "token: only their own).",
        extensions=[allow(Action.READ_ORDERS)],
    )
    async def orders(
        self,
        info: Info,
        customer_id: strawberry.ID | None = None,
        status: OrderStatus | None = None,
        first: int | None = None,
        after: str | None = None,
        at_least: Position | None = None,
    ) -> OrderConnection:
        if customer_id is not None and not could_exist(customer_id):
            customer_id = strawberry.ID("-")  # matches no one, and is safe to send
        size, customer = _page_size(first), scope(info)
        try:
            page = await answer(
                info,
                at_least,
                [ORDER_VIEWS],
                lambda q: q.orders(
                    customer_id=None if customer_id is None else str(customer_id),
                    status=None if status is None else status.value,
                    first=size,
                    after=after,
                    scope=customer,
                ),
            )
        except InvalidCursor as error:
            raise GraphQLError(str(error)) from None
        return OrderConnection.of(page)

    @strawberry.field(
        description="A customer's order summary, or null.",
        extensions=[allow(Action.READ_ORDERS)],
    )
    async def customer(
        self,
        info: Info,
        id: strawberry.ID,
        at_least: Position | None = None,
    ) -> CustomerSummary | None:
        if not could_exist(id):
            return None
        customer = scope(info)
        view = await answer(
            info, at_least, [CUSTOMER_SUMMARIES], lambda q: q.customer(str(id), scope=customer)
        )
        return None if view is None else CustomerSummary.of(view)

    @strawberry.field(
        description="Customers, most recent order first.",
        extensions=[allow(Action.READ_ALL_CUSTOMERS)],
    )
    async def customers(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        at_least: Position | None = None,
    ) -> CustomerConnection:
        size = _page_size(first)
        try:
            page = await answer(
                info, at_least, [CUSTOMER_SUMMARIES], lambda q: q.customers(size, after)
            )
        except InvalidCursor as error:
            raise GraphQLError(str(error)) from None
        return CustomerConnection.of(page)

    @strawberry.field(
        description="Sales per UTC day from `from` to `to` inclusive.",
        extensions=[allow(Action.READ_ALL_CUSTOMERS)],
    )
    async def daily_sales(
        self,
        info: Info,
        from_: Annotated[Date, strawberry.argument(name="from")],
        to: Date,
        at_least: Position | None = None,
    ) -> list[DailySales]:
        if to < from_:
            raise GraphQLError("`to` must not be before `from`")
        if (to - from_).days >= MAX_DAYS:
            raise GraphQLError(f"at most {MAX_DAYS} days can be asked for at once")
        days = await answer(info, at_least, [DAILY_SALES], lambda q: q.daily_sales(from_, to))
        return [
            DailySales(
                date=d.date,
                orders_placed=d.orders_placed,
                orders_cancelled=d.orders_cancelled,
                revenue=d.revenue,
                items_sold=Count(d.items_sold),
            )
            for d in days
        ]

    @strawberry.field(
        description="Where each projection is, and how far behind the store.",
        extensions=[allow(Action.READ_PROGRESS)],
    )
    async def projections(
        self,
        info: Info,
        at_least: Position | None = None,
    ) -> list[ProjectionStatus]:
        statuses = await answer(info, at_least, PROJECTION_NAMES, lambda q: q.projection_statuses())
        reads = info.context.services.reads
        await reads.check()  # each standby's position and lag now, not at its last check
        inline = info.context.services.inline
        return [ProjectionStatus.of(s, reads.statuses(s.name), inline) for s in statuses]
