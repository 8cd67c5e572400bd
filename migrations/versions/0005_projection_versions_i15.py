"""Projection versions: each projection's active version on its checkpoint, every version in
``projection_versions`` (a build's checkpoint, lease and progress), and skipped events on
record in ``projection_skips``. Version 1 keeps the tables it already has; later versions'
tables (``order_views_v2``, ...) are created on demand from the projection's definitions.

A checkpoint left "rebuilding" by the old in-place rebuild turns "live": its tables hold
what its position says, and the projector carries on from there as before.

Revision ID: p15_versions
Revises: r18_vacuum_truncate
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from domain.eventstore.tables import UTCDateTime

revision = "p15_versions"
down_revision = "r18_vacuum_truncate"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projection_checkpoints") as table:
        table.add_column(sa.Column("version", sa.Integer, nullable=False, server_default="1"))
        table.add_column(sa.Column("code_version", sa.Integer, nullable=False, server_default="1"))
    op.execute("UPDATE projection_checkpoints SET state = 'live' WHERE state = 'rebuilding'")
    op.create_table(
        "projection_versions",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("code_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("error_position", sa.BigInteger),
        sa.Column("builder", sa.String(200)),
        sa.Column("lease_until", UTCDateTime),
        sa.Column("rate", sa.Float),
        sa.Column("note", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("activated_at", UTCDateTime),
        sa.Column("retired_at", UTCDateTime),
        sa.Column("dropped_at", UTCDateTime),
    )
    op.create_table(
        "projection_skips",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("position", sa.BigInteger, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("skipped_by", sa.String(200), nullable=False),
        sa.Column("skipped_at", UTCDateTime, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":  # read on standbys, as r18_vacuum_truncate
        for name in ("projection_versions", "projection_skips"):
            op.execute(f"ALTER TABLE {name} SET (vacuum_truncate = false)")


def downgrade() -> None:
    op.drop_table("projection_skips")
    op.drop_table("projection_versions")
    with op.batch_alter_table("projection_checkpoints") as table:
        table.drop_column("code_version")
        table.drop_column("version")
