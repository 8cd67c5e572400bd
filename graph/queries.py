"""Queries: answered from projection tables only, through the read-model query handlers.

``atLeast`` asks that the projection behind a field has reached a position (the ``position``
a mutation returned) before the field is answered: read-your-writes. The wait is bounded; on
timeout the field is answered with what there is and the response says so in ``extensions``.
A wrong argument is a GraphQLError (shown to the client); anything else raised is masked.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date as Date
from typing import Annotated

import strawberry
from graphql import GraphQLError

from domain.access import Action
from domain.limits import id_problem
from graph import metrics
from graph.context import Context
from graph.permissions import allow, scope
from graph.types import (
    Count,
    CustomerConnection,
    CustomerSummary,
    DailySales,
    Order,
    OrderConnection,
    OrderStatus,
    Position,
    ProjectionStatus,
)
from readmodels.queries import InvalidCursor
from readmodels.registry import PROJECTION_NAMES

Info = strawberry.Info[Context, None]
MAX_DAYS = 366


async def reached(info: Info, at_least: int | None, projections: Sequence[str]) -> None:
    """Wait (bounded) for the projections; record the field as stale if they did not get
    there in time."""
    if at_least is None:
        return
    services = info.context.services
    await services.budgets.check_reachable(at_least, services.queries.head_position)
    started = time.perf_counter()
    done = False
    with services.budgets.held_read() as may_wait:
        if may_wait:
            with metrics.READ_WAITERS.track_inprogress():
                done = await services.waiter.wait_for(
                    at_least, projections, within=services.read_wait_seconds
                )
            metrics.READ_WAITS.labels("reached" if done else "timeout").inc()
            metrics.READ_WAIT_SECONDS.observe(time.perf_counter() - started)
    if done:
        return
    positions = await services.waiter.positions(projections)
    if not may_wait and all(at >= at_least for at in positions.values()):
        return  # no wait allowed, and none needed
    info.context.stale.append(
        {
            "field": info.path.key,
            "atLeast": at_least,
            "positions": positions,
            # "busy": as many reads as the budget allows were already waiting
            "reason": "timeout" if may_wait else "busy",
        }
    )


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
        await reached(info, at_least, ["order_views"])
        if not could_exist(id):
            return None
        view = await info.context.services.queries.order(str(id), scope=scope(info))
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
        await reached(info, at_least, ["order_views"])
        if customer_id is not None and not could_exist(customer_id):
            customer_id = strawberry.ID("-")  # matches no one, and is safe to send
        try:
            page = await info.context.services.queries.orders(
                customer_id=None if customer_id is None else str(customer_id),
                status=None if status is None else status.value,
                first=_page_size(first),
                after=after,
                scope=scope(info),
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
        await reached(info, at_least, ["customer_summaries"])
        if not could_exist(id):
            return None
        view = await info.context.services.queries.customer(str(id), scope=scope(info))
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
        await reached(info, at_least, ["customer_summaries"])
        try:
            page = await info.context.services.queries.customers(_page_size(first), after)
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
        await reached(info, at_least, ["daily_sales"])
        days = await info.context.services.queries.daily_sales(from_, to)
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
        await reached(info, at_least, PROJECTION_NAMES)
        statuses = await info.context.services.queries.projection_statuses()
        return [ProjectionStatus.of(s) for s in statuses]
