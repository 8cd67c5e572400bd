"""Query handlers: read projection tables only, return plain typed objects.

Lists are keyset-paginated: a cursor is the opaque form of the sort key of the last item, so a
page is one indexed range scan however deep it is, and rows inserted meanwhile never shift it.
"""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.eventstore.engines import reader
from domain.eventstore.store import head_on
from readmodels.driver_reads import DriverReads
from readmodels.names import CUSTOMER_SUMMARIES, DAILY_SALES, ORDER_VIEWS
from readmodels.tables import (
    checkpoints,
    customer_summaries,
    daily_sales,
    order_history,
    order_views,
    projection_skips,
    projection_versions,
)
from readmodels.versions import table_at

log = logging.getLogger("ordergraph.queries")

T = TypeVar("T")
MAX_PAGE = 100
MAX_HISTORY = 100  # entries of Order.history in one answer: the latest ones


class InvalidCursor(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class AddressView:
    line1: str
    line2: str | None
    city: str
    postal_code: str
    country: str


@dataclass(frozen=True, slots=True)
class OrderLineView:
    sku: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal


@dataclass(frozen=True, slots=True)
class OrderView:
    id: str
    customer_id: str
    status: str
    lines: tuple[OrderLineView, ...]
    total: Decimal
    shipping_address: AddressView
    placed_at: datetime
    paid_at: datetime | None
    shipped_at: datetime | None
    cancelled_at: datetime | None
    carrier: str | None
    tracking_number: str | None
    version: int
    last_position: int


@dataclass(frozen=True, slots=True)
class HistoryEntryView:
    version: int
    position: int
    event_type: str
    recorded_at: datetime
    command_id: str | None
    subject: str | None  # None: recorded before events named who caused them
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CustomerSummaryView:
    customer_id: str
    orders_placed: int
    open_orders: int
    cancelled_orders: int
    total_paid: Decimal
    last_order_at: datetime


@dataclass(frozen=True, slots=True)
class DailySalesView:
    date: date
    orders_placed: int
    orders_cancelled: int
    revenue: Decimal
    items_sold: int


@dataclass(frozen=True, slots=True)
class VersionView:
    version: int
    code_version: int
    status: str  # building | active | retired | dropped
    position: int
    lag: int
    state: str
    error: str | None
    error_position: int | None
    rate: float | None  # events/s while building
    eta_seconds: float | None
    builder: str | None
    note: str | None
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None
    dropped_at: datetime | None


@dataclass(frozen=True, slots=True)
class SkipView:
    position: int
    version: int
    event_type: str
    reason: str
    skipped_by: str
    skipped_at: datetime


@dataclass(frozen=True, slots=True)
class ProjectionStatusView:
    name: str
    position: int
    head: int
    lag: int
    state: str
    error: str | None
    error_position: int | None
    version: int = 1  # the active one, whose tables queries read
    versions: tuple[VersionView, ...] = ()
    skipped: tuple[SkipView, ...] = ()


@dataclass(frozen=True, slots=True)
class Edge(Generic[T]):
    cursor: str
    node: T


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    edges: list[Edge[T]]
    has_next_page: bool
    total_count: int

    @property
    def end_cursor(self) -> str | None:
        return self.edges[-1].cursor if self.edges else None


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"p:{position}".encode()).decode()


MAX_POSITION = 2**63 - 1  # BIGINT: a larger number in a forged cursor would fail in the query


def decode_cursor(cursor: str) -> int:
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind != "p" or not value.isdigit() or len(value) > 19:
            raise ValueError(kind)
        position = int(value)
        if not 0 < position <= MAX_POSITION:
            raise ValueError(value)
        return position
    except (ValueError, UnicodeError) as error:
        raise InvalidCursor(f"not a cursor from this API: {cursor[:100]!r}") from error


class ReadModelQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = reader(engine)  # every query here is one statement, or may as well be
        self._driver = DriverReads(self._engine)
        # The version each projection was active at when last read here: the version a
        # look-up by key tries first (see _by_key).
        self._seen: dict[str, int] = {}

    # ``scope``: the one customer whose rows the caller may see (domain/access.py), or None
    # for all. Another customer's row is then simply not there.

    async def order(self, order_id: str, scope: str | None = None) -> OrderView | None:
        row = await self._by_key(order_views, ORDER_VIEWS, order_id, scope)
        return None if row is None else _order(row)

    async def _by_key(
        self, definition: sa.Table, projection: str, key: str, scope: str | None
    ) -> Any:
        """The row of ``definition`` with primary key ``key`` (and ``customer_id`` ``scope``)
        in the projection's active version, or None: in one statement, which reads the
        active version beside the row (one snapshot, so the same answer as reading the
        version first, as ``_active`` does), from the table of the version seen last time.
        Only after a switch is it read again, from the table it names.

        On the driver directly (readmodels/driver_reads.py); through SQLAlchemy if that
        fails, which then answers or raises as SQLAlchemy does."""
        values = {"projection": projection, "key": key, "scope": scope}
        scoped = scope is not None
        try:
            async with self._driver.connect() as driver:

                async def on_driver(statement: sa.Select[Any]) -> Any:
                    return await driver.first(statement, values)

                return await self._versioned(definition, projection, scoped, on_driver)
        except Exception as error:
            log.debug("driver read of %r failed, read again through SQLAlchemy: %r", key, error)
        async with self._engine.connect() as conn:

            async def on_sqlalchemy(statement: sa.Select[Any]) -> Any:
                return (await conn.execute(statement, values)).first()

            return await self._versioned(definition, projection, scoped, on_sqlalchemy)

    async def _versioned(
        self,
        definition: sa.Table,
        projection: str,
        scoped: bool,
        first: Callable[[sa.Select[Any]], Awaitable[Any]],
    ) -> Any:
        version = self._seen.get(projection, 1)
        for _ in range(2):  # a second switch between the two: answered from the second
            found = await first(_row_with_version(table_at(definition, version), scoped))
            active = 1 if found is None else int(found.active_version or 1)
            if found is None or active == version:
                break  # no checkpoint row yet (version 1), or read at the active version
            version = self._seen[projection] = active
        if found is None or found.matched is None:
            return None
        return found

    async def order_history(self, order_id: str) -> list[HistoryEntryView]:
        """The order's latest ``MAX_HISTORY`` events, oldest first: address changes are
        unbounded, and one answer must not be."""
        async with self._engine.connect() as conn:
            history = await _active(conn, order_history, ORDER_VIEWS)
            query = (
                sa.select(history)
                .where(history.c.order_id == order_id)
                .order_by(history.c.version.desc())
                .limit(MAX_HISTORY)
            )
            rows = list(reversed((await conn.execute(query)).all()))
        return [
            HistoryEntryView(
                row.version,
                row.position,
                row.event_type,
                row.recorded_at,
                row.command_id,
                row.subject,
                tuple(row.roles),
            )
            for row in rows
        ]

    async def changed_orders(self, after: int, upto: int) -> list[str]:
        """Ids of the orders whose view last changed at a position in (after, upto]."""
        async with self._engine.connect() as conn:
            views = await _active(conn, order_views, ORDER_VIEWS)
            query = sa.select(views.c.order_id).where(
                views.c.last_position > after, views.c.last_position <= upto
            )
            return list((await conn.scalars(query)).all())

    async def head_position(self) -> int:
        """The event store's head: how far the projections have to go (as in their lag)."""
        async with self._engine.connect() as conn:
            return await head_on(conn)

    async def orders(
        self,
        customer_id: str | None = None,
        status: str | None = None,
        first: int = 20,
        after: str | None = None,
        scope: str | None = None,
    ) -> Page[OrderView]:
        """Newest first."""

        def filters(views: sa.Table) -> list[Any]:
            found: list[Any] = []
            if customer_id is not None:
                found.append(views.c.customer_id == customer_id)
            if scope is not None:
                found.append(views.c.customer_id == scope)
            if status is not None:
                found.append(views.c.status == status)
            return found

        return await self._page(
            (order_views, ORDER_VIEWS), "placed_position", filters, first, after, _order
        )

    async def customer(
        self, customer_id: str, scope: str | None = None
    ) -> CustomerSummaryView | None:
        if scope is not None and scope != customer_id:
            return None
        row = await self._by_key(customer_summaries, CUSTOMER_SUMMARIES, customer_id, None)
        return None if row is None else _customer(row)

    async def customers(
        self, first: int = 20, after: str | None = None
    ) -> Page[CustomerSummaryView]:
        """Most recent order first."""
        return await self._page(
            (customer_summaries, CUSTOMER_SUMMARIES),
            "last_order_position",
            lambda _: [],
            first,
            after,
            _customer,
        )

    async def daily_sales(self, start: date, end: date) -> list[DailySalesView]:
        """Every day from start to end inclusive; days without sales are zeros."""
        async with self._engine.connect() as conn:
            table = await _active(conn, daily_sales, DAILY_SALES)
            query = sa.select(table).where(table.c.day.between(start, end))
            rows = {row.day: row for row in await conn.execute(query)}
        days = (start + timedelta(days=n) for n in range((end - start).days + 1))
        return [
            DailySalesView(
                day, row.orders_placed, row.orders_cancelled, row.revenue, row.items_sold
            )
            if (row := rows.get(day)) is not None
            else DailySalesView(day, 0, 0, Decimal("0.00"), 0)
            for day in days
        ]

    async def projection_statuses(
        self, names: Sequence[str] | None = None
    ) -> list[ProjectionStatusView]:
        query = sa.select(checkpoints).order_by(checkpoints.c.name)
        if names is not None:
            query = query.where(checkpoints.c.name.in_(names))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            head = await head_on(conn)
            wanted = [row.name for row in rows]
            version_rows = (
                await conn.execute(
                    sa.select(projection_versions)
                    .where(projection_versions.c.name.in_(wanted))
                    .order_by(projection_versions.c.version)
                )
            ).all()
            skip_rows = (
                await conn.execute(
                    sa.select(projection_skips)
                    .where(projection_skips.c.name.in_(wanted))
                    .order_by(projection_skips.c.position)
                )
            ).all()
        return [
            ProjectionStatusView(
                row.name,
                row.position,
                head,
                max(head - row.position, 0),
                row.state,
                row.error,
                row.error_position,
                row.version,
                tuple(_version(v, row, head) for v in version_rows if v.name == row.name),
                tuple(
                    SkipView(
                        s.position, s.version, s.event_type, s.reason, s.skipped_by, s.skipped_at
                    )
                    for s in skip_rows
                    if s.name == row.name
                ),
            )
            for row in rows
        ]

    async def _page(
        self,
        definition: tuple[sa.Table, str],  # the table and its projection
        key_name: str,
        filters_of: Callable[[sa.Table], list[Any]],
        first: int,
        after: str | None,
        build: Callable[[Any], T],
    ) -> Page[T]:
        first = max(0, min(first, MAX_PAGE))
        async with self._engine.connect() as conn:
            table = await _active(conn, *definition)
            key: sa.Column[int] = table.c[key_name]
            filters = filters_of(table)
            page_filters = list(filters)
            if after is not None:
                page_filters.append(key < decode_cursor(after))
            query = sa.select(table).where(*page_filters).order_by(key.desc()).limit(first + 1)
            count = sa.select(sa.func.count()).select_from(table).where(*filters)
            rows = (await conn.execute(query)).all()
            total = int(await conn.scalar(count) or 0)
        edges = [Edge(encode_cursor(row._mapping[key.name]), build(row)) for row in rows[:first]]
        return Page(edges, len(rows) > first, total)


_ACTIVE_VERSION = sa.select(checkpoints.c.version).where(checkpoints.c.name == sa.bindparam("name"))


@functools.cache
def _row_with_version(table: sa.Table, scoped: bool) -> sa.Select[Any]:
    """``SELECT checkpoint.version, t.* FROM checkpoints LEFT JOIN t ON t.key = :key``: one
    row whether ``t`` has the key or not, so a miss tells the active version too. Built
    once per table: building statements per request showed in profiles."""
    (key,) = table.primary_key.columns
    on = key == sa.bindparam("key")
    if scoped:
        on = sa.and_(on, table.c.customer_id == sa.bindparam("scope"))
    return (
        sa.select(
            checkpoints.c.version.label("active_version"),
            key.label("matched"),
            *table.columns,
        )
        .select_from(checkpoints.outerjoin(table, on))
        .where(checkpoints.c.name == sa.bindparam("projection"))
    )


async def _active(conn: AsyncConnection, definition: sa.Table, projection: str) -> sa.Table:
    """The table of the projection's active version. Read before the rows, after any wait:
    a wait that saw a position saw the version switched to with it (one row holds both),
    and a retired version's tables stay until well after its switch."""
    version = await conn.scalar(_ACTIVE_VERSION, {"name": projection})
    return table_at(definition, int(version or 1))


def _version(row: Any, checkpoint: Any, head: int) -> VersionView:
    active = row.status == "active" and row.version == checkpoint.version
    position = checkpoint.position if active else row.position
    lag = max(head - position, 0) if row.status in ("active", "building") else 0
    rate = row.rate if row.status == "building" else None
    return VersionView(
        version=row.version,
        code_version=row.code_version,
        status=row.status,
        position=position,
        lag=lag,
        state=checkpoint.state if active else row.state,
        error=checkpoint.error if active else row.error,
        error_position=checkpoint.error_position if active else row.error_position,
        rate=rate,
        eta_seconds=round(lag / rate, 1) if rate else None,
        builder=row.builder if row.status == "building" else None,
        note=row.note,
        created_at=row.created_at,
        activated_at=row.activated_at,
        retired_at=row.retired_at,
        dropped_at=row.dropped_at,
    )


def _order(row: Any) -> OrderView:
    return OrderView(
        id=row.order_id,
        customer_id=row.customer_id,
        status=row.status,
        lines=tuple(
            OrderLineView(
                line["sku"],
                line["quantity"],
                Decimal(line["unit_price"]),
                Decimal(line["line_total"]),
            )
            for line in row.lines
        ),
        total=row.total,
        shipping_address=AddressView(**row.shipping_address),
        placed_at=row.placed_at,
        paid_at=row.paid_at,
        shipped_at=row.shipped_at,
        cancelled_at=row.cancelled_at,
        carrier=row.carrier,
        tracking_number=row.tracking_number,
        version=row.version,
        last_position=row.last_position,
    )


def _customer(row: Any) -> CustomerSummaryView:
    return CustomerSummaryView(
        row.customer_id,
        row.orders_placed,
        row.open_orders,
        row.cancelled_orders,
        row.total_paid,
        row.last_order_at,
    )
