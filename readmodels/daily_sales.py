"""Daily sales per UTC day: orders placed and cancelled, revenue paid, items sold.

Each event counts on the day it happened: placements (and their items) on the day placed,
revenue on the day paid, cancellations on the day cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from domain import events
from readmodels.names import DAILY_SALES
from readmodels.projection import Envelope, Projection, Row
from readmodels.rows import load_rows, upsert
from readmodels.tables import daily_sales

_COUNTED = (events.OrderPlaced, events.OrderPaid, events.OrderCancelled)


class DailySales(Projection):
    name = DAILY_SALES
    tables = (daily_sales,)
    handles = frozenset({"OrderPlaced", "OrderPaid", "OrderCancelled"})

    async def apply(self, conn: AsyncConnection, batch: Sequence[Envelope]) -> None:
        counted = [e.event for e in batch if isinstance(e.event, _COUNTED)]
        days = {utc_day(event) for event in counted}
        table = self.table(daily_sales)
        rows = await load_rows(conn, table, table.c.day, days)
        for event in counted:
            day = utc_day(event)
            row = rows.get(day)
            if row is None:  # not setdefault: that would build an empty row per event
                row = rows[day] = _empty(day)
            match event:
                case events.OrderPlaced(lines=lines):
                    row["orders_placed"] += 1
                    row["items_sold"] += sum(line.quantity for line in lines)
                case events.OrderPaid(amount=amount):
                    row["revenue"] += amount
                case events.OrderCancelled():
                    row["orders_cancelled"] += 1
        await upsert(conn, table, list(rows.values()), ["day"])


def utc_day(event: events.Event) -> date:
    return event.occurred_at.astimezone(UTC).date()


def _empty(day: date) -> Row:
    return {
        "day": day,
        "orders_placed": 0,
        "orders_cancelled": 0,
        "revenue": Decimal("0.00"),
        "items_sold": 0,
    }
