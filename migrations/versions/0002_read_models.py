"""Read models: projection checkpoints, order views, customer summaries, daily sales.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.eventstore.tables import Json, UTCDateTime
from readmodels.tables import Money

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("error_position", sa.BigInteger),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "order_views",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("customer_id", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("lines", Json, nullable=False),
        sa.Column("total", Money, nullable=False),
        sa.Column("shipping_address", Json, nullable=False),
        sa.Column("placed_at", UTCDateTime, nullable=False),
        sa.Column("paid_at", UTCDateTime),
        sa.Column("shipped_at", UTCDateTime),
        sa.Column("cancelled_at", UTCDateTime),
        sa.Column("carrier", sa.String(100)),
        sa.Column("tracking_number", sa.String(100)),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("placed_position", sa.BigInteger, nullable=False),
        sa.Column("last_position", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_order_views_placed", "order_views", ["placed_position"])
    op.create_index("ix_order_views_customer", "order_views", ["customer_id", "placed_position"])
    op.create_index("ix_order_views_status", "order_views", ["status", "placed_position"])
    op.create_table(
        "customer_summaries",
        sa.Column("customer_id", sa.String(100), primary_key=True),
        sa.Column("orders_placed", sa.Integer, nullable=False),
        sa.Column("open_orders", sa.Integer, nullable=False),
        sa.Column("cancelled_orders", sa.Integer, nullable=False),
        sa.Column("total_paid", Money, nullable=False),
        sa.Column("last_order_at", UTCDateTime, nullable=False),
        sa.Column("last_order_position", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_customer_summaries_recent", "customer_summaries", ["last_order_position"])
    op.create_table(
        "customer_orders",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("customer_id", sa.String(100), nullable=False),
    )
    op.create_table(
        "daily_sales",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("orders_placed", sa.Integer, nullable=False),
        sa.Column("orders_cancelled", sa.Integer, nullable=False),
        sa.Column("revenue", Money, nullable=False),
        sa.Column("items_sold", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "daily_sales",
        "customer_orders",
        "customer_summaries",
        "order_views",
        "projection_checkpoints",
    ):
        op.drop_table(table)
