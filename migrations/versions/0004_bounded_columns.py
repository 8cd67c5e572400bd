"""Columns sized for everything the domain accepts (domain/limits.py), and orderChanged's index.

Money sums and order counts widen (a customer's or a day's total grows with its number of
orders); carrier and tracking number hold as many characters as the edge accepts. SQLite binds
no declared type or length (its integers are 64-bit and its money is text), so only PostgreSQL
needs the ALTERs; the index is for both.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.limits import MAX_TEXT, MONEY_PLACES, SUM_PRECISION

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COUNTS = {
    "customer_summaries": ("orders_placed", "open_orders", "cancelled_orders"),
    "daily_sales": ("orders_placed", "orders_cancelled", "items_sold"),
}
_SUMS = {"customer_summaries": "total_paid", "daily_sales": "revenue"}
_TEXTS = ("carrier", "tracking_number")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in _COUNTS.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.BigInteger, existing_nullable=False)
        for table, column in _SUMS.items():
            op.alter_column(
                table,
                column,
                type_=sa.Numeric(SUM_PRECISION, MONEY_PLACES),
                existing_nullable=False,
            )
        for column in _TEXTS:
            op.alter_column("order_views", column, type_=sa.String(MAX_TEXT))
    op.create_index("ix_order_views_changed", "order_views", ["last_position"])


def downgrade() -> None:
    op.drop_index("ix_order_views_changed", "order_views")
    if op.get_bind().dialect.name == "postgresql":
        for column in _TEXTS:
            op.alter_column("order_views", column, type_=sa.String(100))
        for table, column in _SUMS.items():
            op.alter_column(table, column, type_=sa.Numeric(14, 2), existing_nullable=False)
        for table, columns in _COUNTS.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.Integer, existing_nullable=False)
