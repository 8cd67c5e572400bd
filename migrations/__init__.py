"""Alembic migrations for every table of ordergraph, and a way to run them from code."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import write_transaction

HERE = Path(__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the database to the newest schema; safe to call from several processes at once."""

    def upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Concurrent migrators queue here instead of racing on CREATE TABLE.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(727274)"))
        command.upgrade(alembic_config(connection), "head")

    async with write_transaction(engine) as conn:
        await conn.run_sync(upgrade)
