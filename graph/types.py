"""GraphQL output types and scalars. Names and shapes are the client contract (MISSION.md)."""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from datetime import date as Date
from datetime import datetime
from decimal import Decimal
from typing import Annotated, NewType

import strawberry

from domain.access import Action
from domain.eventstore.outages import once_more_after_outage
from domain.order import OrderStatus
from graph.context import Context
from graph.permissions import allow
from readmodels import queries as q
from readmodels.projector import public_error
from readmodels.read_targets import TargetStatus

Position = NewType("Position", int)

# Registered on the schema through StrawberryConfig.scalar_map (see graph/schema.py).
POSITION_SCALAR = strawberry.scalar(
    name="Position",
    serialize=int,
    parse_value=lambda value: _position(value),
    description="A global event position, as a JSON integer: the read-your-writes token.",
)


Count = NewType("Count", int)

# A tally that can pass 2^31 (GraphQL's Int): items sold in a day reach it with about 21,500
# orders of the largest accepted size, and an Int that overflows fails the whole answer.
COUNT_SCALAR = strawberry.scalar(
    name="Count",
    serialize=int,
    parse_value=lambda value: _position(value),
    description="A count of things, as a JSON integer (it can exceed GraphQL's 32-bit Int).",
)


def _position(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("Position must be a non-negative integer")
    return value


# The domain's own enum, exposed as is: one list of statuses for the aggregate, the read
# model and the contract.
# (strawberry.enum marks the class in place.)
strawberry.enum(OrderStatus, name="OrderStatus")


@strawberry.enum(description="How a projection is applied (INLINE_PROJECTIONS).")
class ProjectionLifecycle(enum.Enum):
    INLINE = "INLINE"  # in each append's transaction: a write is in it when its answer arrives
    ASYNC = "ASYNC"  # by the projector, after the commit: a read may wait for it (atLeast)


@strawberry.type
class Address:
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str


@strawberry.type
class OrderLine:
    sku: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@strawberry.type(description="One event of an order, and who caused it.")
class HistoryEntry:
    version: int
    position: Position
    event_type: str
    recorded_at: datetime
    command_id: str | None
    subject: str | None = strawberry.field(
        description="The token subject that caused it (null: recorded before events named "
        "who caused them; `anonymous`: AUTH=none)."
    )
    roles: list[str]


@strawberry.type
class Order:
    id: strawberry.ID
    customer_id: strawberry.ID
    status: OrderStatus
    lines: list[OrderLine]
    total: Decimal
    shipping_address: Address
    placed_at: datetime
    paid_at: datetime | None
    shipped_at: datetime | None
    cancelled_at: datetime | None
    version: int

    @strawberry.field(
        description=(
            "The order's events with who caused each, oldest first; the latest 100 (staff only)."
        ),
        extensions=[allow(Action.READ_HISTORY)],
    )
    async def history(self, info: strawberry.Info[Context, None]) -> list[HistoryEntry] | None:
        entries = await info.context.services.queries.order_history(str(self.id))
        return [
            HistoryEntry(
                version=e.version,
                position=Position(e.position),
                event_type=e.event_type,
                recorded_at=e.recorded_at,
                command_id=e.command_id,
                subject=e.subject,
                roles=list(e.roles),
            )
            for e in entries
        ]

    @classmethod
    def of(cls, view: q.OrderView) -> Order:
        a = view.shipping_address
        return cls(
            id=strawberry.ID(view.id),
            customer_id=strawberry.ID(view.customer_id),
            status=OrderStatus(view.status),
            lines=[
                OrderLine(
                    sku=x.sku, quantity=x.quantity, unit_price=x.unit_price, line_total=x.line_total
                )
                for x in view.lines
            ],
            total=view.total,
            shipping_address=Address(
                line1=a.line1,
                line2=a.line2,
                city=a.city,
                postal_code=a.postal_code,
                country=a.country,
            ),
            placed_at=view.placed_at,
            paid_at=view.paid_at,
            shipped_at=view.shipped_at,
            cancelled_at=view.cancelled_at,
            version=view.version,
        )


@strawberry.type
class CustomerSummary:
    customer_id: strawberry.ID
    orders_placed: int
    open_orders: int
    cancelled_orders: int
    total_paid: Decimal
    last_order_at: datetime | None

    @classmethod
    def of(cls, view: q.CustomerSummaryView) -> CustomerSummary:
        return cls(
            customer_id=strawberry.ID(view.customer_id),
            orders_placed=view.orders_placed,
            open_orders=view.open_orders,
            cancelled_orders=view.cancelled_orders,
            total_paid=view.total_paid,
            last_order_at=view.last_order_at,
        )


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class OrderEdge:
    cursor: str
    node: Order


@strawberry.type
class OrderConnection:
    edges: list[OrderEdge]
    page_info: PageInfo
    total_count: int

    @classmethod
    def of(cls, page: q.Page[q.OrderView]) -> OrderConnection:
        return cls(
            edges=[OrderEdge(cursor=e.cursor, node=Order.of(e.node)) for e in page.edges],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
            total_count=page.total_count,
        )


@strawberry.type
class CustomerEdge:
    cursor: str
    node: CustomerSummary


@strawberry.type
class CustomerConnection:
    edges: list[CustomerEdge]
    page_info: PageInfo
    total_count: int

    @classmethod
    def of(cls, page: q.Page[q.CustomerSummaryView]) -> CustomerConnection:
        return cls(
            edges=[
                CustomerEdge(cursor=e.cursor, node=CustomerSummary.of(e.node)) for e in page.edges
            ],
            page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
            total_count=page.total_count,
        )


@strawberry.type
class DailySales:
    date: Date
    orders_placed: int
    orders_cancelled: int
    revenue: Decimal
    items_sold: Count


@strawberry.type(description="One version of a projection: its own tables and checkpoint.")
class ProjectionVersion:
    version: int
    code_version: int = strawberry.field(description="The projection code that builds it.")
    status: str = strawberry.field(description="building, active, retired or dropped.")
    position: Position
    lag: int
    state: str
    error_text: strawberry.Private[str | None]
    error_position: Position | None
    rate: float | None = strawberry.field(description="Events a second, while building.")
    eta_seconds: float | None = strawberry.field(description="Until caught up, at that rate.")
    builder_text: strawberry.Private[str | None]
    note: str | None
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    dropped_at: datetime | None

    @strawberry.field(
        description="Why this version failed, when it did (null for all but staff).",
        extensions=[allow(Action.READ_PROJECTION_ERRORS, fail_silently=True)],
    )
    def error(self) -> str | None:
        return self.error_text

    @strawberry.field(
        description="The process building it, host:pid (null for all but staff).",
        extensions=[allow(Action.READ_PROJECTION_ERRORS, fail_silently=True)],
    )
    def builder(self) -> str | None:
        return self.builder_text

    @classmethod
    def of(cls, v: q.VersionView) -> ProjectionVersion:
        return cls(
            version=v.version,
            code_version=v.code_version,
            status=v.status,
            position=Position(v.position),
            lag=v.lag,
            state=v.state,
            error_text=public_error(v.error, v.error_position),
            error_position=None if v.error_position is None else Position(v.error_position),
            rate=v.rate,
            eta_seconds=v.eta_seconds,
            builder_text=v.builder,
            note=v.note,
            created_at=v.created_at,
            activated_at=v.activated_at,
            retired_at=v.retired_at,
            dropped_at=v.dropped_at,
        )


@strawberry.type(description="An event a projection was told to skip, on record.")
class SkippedEvent:
    position: Position
    version: int
    event_type: str
    reason: str
    skipped_by_text: strawberry.Private[str]
    skipped_at: datetime

    @strawberry.field(
        description="Who skipped it (null for all but staff).",
        extensions=[allow(Action.READ_PROJECTION_ERRORS, fail_silently=True)],
    )
    def skipped_by(self) -> str | None:
        return self.skipped_by_text


@strawberry.type
class ProjectionStatus:
    name: str
    position: Position
    lag: int
    state: str
    error_text: strawberry.Private[str | None]
    targets: strawberry.Private[list[ReadTargetStatus]]

    @strawberry.field(
        description="This process's standbys (READ_DATABASE_URLS) for this projection: "
        "empty when queries read the primary (null for all but staff: it names hosts).",
        extensions=[allow(Action.READ_PROJECTION_ERRORS, fail_silently=True)],
    )
    def read_targets(self) -> list[ReadTargetStatus] | None:
        return self.targets

    @strawberry.field(
        description="Why the projection failed, when it did (null for all but staff).",
        extensions=[allow(Action.READ_PROJECTION_ERRORS, fail_silently=True)],
    )
    def error(self) -> str | None:
        return self.error_text

    version: int = strawberry.field(description="The active version: the one queries read.")
    head: Position
    versions: list[ProjectionVersion]
    skipped: list[SkippedEvent]
    lifecycle: ProjectionLifecycle = strawberry.field(
        description="How this server applies it: INLINE, in each append's transaction, or "
        "ASYNC, by the projector after the commit."
    )

    @classmethod
    def of(
        cls,
        view: q.ProjectionStatusView,
        targets: Sequence[TargetStatus] = (),
        inline: Collection[str] = (),
    ) -> ProjectionStatus:
        return cls(
            name=view.name,
            lifecycle=ProjectionLifecycle.INLINE
            if view.name in inline
            else ProjectionLifecycle.ASYNC,
            position=Position(view.position),
            lag=view.lag,
            state=view.state,
            # A short code and the position: the detail stays in the log (public_error).
            error_text=public_error(view.error, view.error_position),
            targets=[ReadTargetStatus.of(t) for t in targets],
            version=view.version,
            head=Position(view.head),
            versions=[ProjectionVersion.of(v) for v in view.versions],
            skipped=[
                SkippedEvent(
                    position=Position(k.position),
                    version=k.version,
                    event_type=k.event_type,
                    reason=k.reason,
                    skipped_by_text=k.skipped_by,
                    skipped_at=k.skipped_at,
                )
                for k in view.skipped
            ],
        )


@strawberry.type(description="One standby's copy of a projection, as last read.")
class ReadTargetStatus:
    target: str = strawberry.field(description="The standby (host:port/database).")
    position: Position | None = strawberry.field(description="Its checkpoint; null: unread.")
    lag: int | None = strawberry.field(description="Events behind the primary's checkpoint.")
    lag_seconds: float | None = strawberry.field(description="Its replay lag in seconds.")
    in_use: bool = strawberry.field(description="Whether queries are sent to it now.")

    @classmethod
    def of(cls, status: TargetStatus) -> ReadTargetStatus:
        return cls(
            target=status.target,
            position=None if status.position is None else Position(status.position),
            lag=status.lag,
            lag_seconds=status.lag_seconds,
            in_use=status.in_use,
        )


@strawberry.type
class ProjectionUpdate:
    projection: str
    position: Position


@strawberry.type
class CaughtUp:
    position: Position
    names: strawberry.Private[list[str]]

    @strawberry.field
    async def projections(self, info: strawberry.Info[Context, None]) -> list[ProjectionStatus]:
        """Read when selected, after the wait: a client that asks for the position alone
        (the usual read-your-writes wait) costs no read at all."""
        services = info.context.services
        reads, names = services.reads, self.names
        statuses, _, _ = await once_more_after_outage(
            lambda: reads.read(None, names, lambda q: q.projection_statuses(names), within=None)
        )
        return [ProjectionStatus.of(s, reads.statuses(s.name), services.inline) for s in statuses]


# Results of mutations: the success member and the expected failures, as union members.


@strawberry.type
class CommandAccepted:
    command_id: strawberry.ID
    order_id: strawberry.ID
    version: int
    position: Position


@strawberry.type
class InvalidInput:
    field: str
    message: str


@strawberry.type
class OrderNotFound:
    order_id: strawberry.ID
    message: str


@strawberry.type
class VersionConflict:
    expected_version: int
    actual_version: int
    message: str


@strawberry.type
class RuleViolated:
    rule: str
    message: str


Outcome = CommandAccepted | InvalidInput | OrderNotFound | VersionConflict | RuleViolated


PlaceOrderResult = Annotated[Outcome, strawberry.union("PlaceOrderResult")]
ChangeShippingAddressResult = Annotated[Outcome, strawberry.union("ChangeShippingAddressResult")]
PayOrderResult = Annotated[Outcome, strawberry.union("PayOrderResult")]
ShipOrderResult = Annotated[Outcome, strawberry.union("ShipOrderResult")]
CancelOrderResult = Annotated[Outcome, strawberry.union("CancelOrderResult")]
