"""Order history: who caused each event of an order (from the events' metadata).

Fed by the order_views projection from now on; the events already stored are copied in
here, straight from the event table (they predate the audit, so they name no subject), so
the order views need no replay. The projection upserts, so an event both copied here and
projected after is one row.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.eventstore.tables import Json, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_history",
        sa.Column("order_id", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("recorded_at", UTCDateTime, nullable=False),
        sa.Column("command_id", sa.String(200)),
        sa.Column("subject", sa.String(255)),
        sa.Column("roles", Json, nullable=False),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    command_id = "metadata->>'command_id'" if postgres else "json_extract(metadata, '$.command_id')"
    no_roles = "'[]'::jsonb" if postgres else "'[]'"
    op.execute(
        "INSERT INTO order_history"
        " (order_id, version, position, event_type, recorded_at, command_id, subject, roles)"
        " SELECT substr(stream_id, 7), stream_version, position, event_type, recorded_at,"
        f" {command_id}, NULL, {no_roles}"
        " FROM events WHERE stream_id LIKE 'order-%'"
    )


def downgrade() -> None:
    op.drop_table("order_history")
