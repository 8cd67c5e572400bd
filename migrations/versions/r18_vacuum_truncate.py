"""Tables read on standbys keep their empty end pages: ``vacuum_truncate = false``.

A VACUUM that truncates a table's empty end pages takes an ACCESS EXCLUSIVE lock, and its
replay on a hot standby cancels the queries reading that table there, even with
``hot_standby_feedback = on``. The pages are reused by later inserts anyway. PostgreSQL only;
SQLite has no such option and no standbys.

Revision ID: r18_vacuum_truncate
Revises: 0004
"""

from __future__ import annotations

from alembic import op

revision = "r18_vacuum_truncate"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = (
    "events",
    "commands",
    "projection_checkpoints",
    "order_views",
    "order_history",
    "customer_orders",
    "customer_summaries",
    "daily_sales",
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET (vacuum_truncate = false)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} RESET (vacuum_truncate)")
