"""Customer summaries: per customer, order counts, total paid and the last order time.

"Open" orders are placed and not yet shipped or cancelled. Total paid counts payments as they
happen; cancelling a paid order does not refund it (refunds are not part of the domain yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection

from domain import events
from readmodels.names import CUSTOMER_SUMMARIES
from readmodels.projection import Envelope, Projection, Row
from readmodels.rows import load_rows, upsert
from readmodels.tables import customer_orders, customer_summaries


class CustomerSummaries(Projection):
    name = CUSTOMER_SUMMARIES
    tables = (customer_summaries, customer_orders)
    handles = frozenset({"OrderPlaced", "OrderPaid", "OrderShipped", "OrderCancelled"})

    async def apply(self, conn: AsyncConnection, batch: Sequence[Envelope]) -> None:
        owners = {
            e.event.order_id: e.event.customer_id
            for e in batch
            if isinstance(e.event, events.OrderPlaced)
        }
        new_orders = [{"order_id": o, "customer_id": c} for o, c in owners.items()]
        others = {e.event.order_id for e in batch} - owners.keys()
        orders, summary_table = self.table(customer_orders), self.table(customer_summaries)
        known = await load_rows(conn, orders, orders.c.order_id, others)
        owners |= {order_id: row["customer_id"] for order_id, row in known.items()}
        summaries = await load_rows(
            conn, summary_table, summary_table.c.customer_id, set(owners.values())
        )
        for envelope in batch:
            customer = owners[envelope.event.order_id]
            summary = summaries.get(customer)
            if summary is None:  # not setdefault: that would build an empty row per event
                summary = summaries[customer] = _empty(customer)
            _fold(summary, envelope)
        await upsert(conn, orders, new_orders, ["order_id"])
        await upsert(conn, summary_table, list(summaries.values()), ["customer_id"])


def _empty(customer_id: str) -> Row:
    return {
        "customer_id": customer_id,
        "orders_placed": 0,
        "open_orders": 0,
        "cancelled_orders": 0,
        "total_paid": Decimal("0.00"),
        "last_order_at": None,
        "last_order_position": 0,
    }


def _fold(summary: Row, envelope: Envelope) -> None:
    match envelope.event:
        case events.OrderPlaced(occurred_at=at):
            summary["orders_placed"] += 1
            summary["open_orders"] += 1
            summary["last_order_at"] = at
            summary["last_order_position"] = envelope.position
        case events.OrderPaid(amount=amount):
            summary["total_paid"] += amount
        case events.OrderShipped():
            summary["open_orders"] -= 1
        case events.OrderCancelled():
            summary["open_orders"] -= 1
            summary["cancelled_orders"] += 1
