"""Projection tables: denormalized for the queries they answer, fed only by the projector."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeEngine

from domain.eventstore.tables import Json, UTCDateTime, metadata
from domain.limits import MAX_TEXT, MONEY_PLACES, MONEY_PRECISION, SUM_PRECISION


class Money(sa.TypeDecorator[Decimal]):
    """NUMERIC on PostgreSQL; exact decimal text on SQLite, which has no decimal type.

    ``precision`` digits (domain/limits.py): MONEY_PRECISION holds one order's money,
    SUM_PRECISION sums over any number of orders."""

    impl = sa.Numeric(MONEY_PRECISION, MONEY_PLACES)
    cache_ok = True

    def __init__(self, precision: int = MONEY_PRECISION) -> None:
        super().__init__()
        self.precision = precision

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(self.precision + 2))
        return dialect.type_descriptor(sa.Numeric(self.precision, MONEY_PLACES, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)

    # SQLite: one step instead of this type's and then String's (a rebuild writes many).
    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return _sqlite_money_text


def _sqlite_money_text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


# The checkpoint of each projection's active version: what queries, waits and health follow.
checkpoints = sa.Table(
    "projection_checkpoints",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    # live | failed; with the error and the position of the event that failed
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("error_position", sa.BigInteger),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    # The version whose tables queries read (readmodels/versions.py), and the code version
    # that built it: a process with older code leaves a newer one alone.
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.Column("code_version", sa.Integer, nullable=False, server_default="1"),
)

# Every version of every projection: the active one, those being built beside it (each with
# its own checkpoint here), and retired ones (kept for the record once their tables are gone).
projection_versions = sa.Table(
    "projection_versions",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("code_version", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # building | active | retired | dropped
    # building: its checkpoint; retired: where it stopped (the active one's is in checkpoints)
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # live | failed, while building
    sa.Column("error", sa.Text),
    sa.Column("error_position", sa.BigInteger),
    sa.Column("builder", sa.String(200)),  # who builds it; a lease, renewed by each batch
    sa.Column("lease_until", UTCDateTime),
    sa.Column("rate", sa.Float),  # events/s of the recent batches
    sa.Column("note", sa.Text),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("activated_at", UTCDateTime),
    sa.Column("retired_at", UTCDateTime),
    sa.Column("dropped_at", UTCDateTime),
)

# Events a projection was told to skip, by whom, when and why: kept forever, shown in
# `projections`, and honoured by every later version that reaches the same position.
projection_skips = sa.Table(
    "projection_skips",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", sa.BigInteger, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("skipped_by", sa.String(200), nullable=False),
    sa.Column("skipped_at", UTCDateTime, nullable=False),
)

order_views = sa.Table(
    "order_views",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("customer_id", sa.String(100), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("lines", Json, nullable=False),
    sa.Column("total", Money(MONEY_PRECISION), nullable=False),
    sa.Column("shipping_address", Json, nullable=False),
    sa.Column("placed_at", UTCDateTime, nullable=False),
    sa.Column("paid_at", UTCDateTime),
    sa.Column("shipped_at", UTCDateTime),
    sa.Column("cancelled_at", UTCDateTime),
    sa.Column("carrier", sa.String(MAX_TEXT)),
    sa.Column("tracking_number", sa.String(MAX_TEXT)),
    sa.Column("version", sa.Integer, nullable=False),
    # Position of the OrderPlaced event: unique and stable, the keyset for pagination.
    sa.Column("placed_position", sa.BigInteger, nullable=False),
    sa.Column("last_position", sa.BigInteger, nullable=False),
    sa.Index("ix_order_views_placed", "placed_position"),
    sa.Index("ix_order_views_customer", "customer_id", "placed_position"),
    sa.Index("ix_order_views_status", "status", "placed_position"),
    sa.Index("ix_order_views_changed", "last_position"),  # orderChanged's routing
)

# Who caused each event of an order (from the events' metadata): staff see it as the order's
# history. Owned by the order_views projection, so it is as current as the order it describes.
order_history = sa.Table(
    "order_history",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.Column("command_id", sa.String(200)),
    sa.Column("subject", sa.String(255)),
    sa.Column("roles", Json, nullable=False),
)

customer_summaries = sa.Table(
    "customer_summaries",
    metadata,
    sa.Column("customer_id", sa.String(100), primary_key=True),
    # Counts of orders: as many as there are positions, so BIGINT like positions.
    sa.Column("orders_placed", sa.BigInteger, nullable=False),
    sa.Column("open_orders", sa.BigInteger, nullable=False),
    sa.Column("cancelled_orders", sa.BigInteger, nullable=False),
    sa.Column("total_paid", Money(SUM_PRECISION), nullable=False),
    sa.Column("last_order_at", UTCDateTime, nullable=False),
    sa.Column("last_order_position", sa.BigInteger, nullable=False),
    sa.Index("ix_customer_summaries_recent", "last_order_position"),
)

# The customer of each order, so that events naming only the order reach its customer.
customer_orders = sa.Table(
    "customer_orders",
    metadata,
    sa.Column("order_id", sa.String(100), primary_key=True),
    sa.Column("customer_id", sa.String(100), nullable=False),
)

daily_sales = sa.Table(
    "daily_sales",
    metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("orders_placed", sa.BigInteger, nullable=False),
    sa.Column("orders_cancelled", sa.BigInteger, nullable=False),
    sa.Column("revenue", Money(SUM_PRECISION), nullable=False),
    # At most MAX_LINES * MAX_QUANTITY items an order: 2**63 of them is 92 trillion orders
    # of 100,000 items in a day, a billion commits a second; BIGINT is wide enough.
    sa.Column("items_sold", sa.BigInteger, nullable=False),
)
