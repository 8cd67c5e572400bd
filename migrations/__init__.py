"""Alembic migrations for every table of ordergraph, and a way to run them from code."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.db import write_transaction

HERE = Path(__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


class SchemaOutOfDate(RuntimeError):
    pass


async def require_head(engine: AsyncEngine) -> None:
    """Refuse to serve a database whose schema is not the one this code expects."""

    def revisions(connection: Connection) -> tuple[str | None, str | None]:
        current = MigrationContext.configure(connection).get_current_revision()
        return current, ScriptDirectory.from_config(alembic_config()).get_current_head()

    async with engine.connect() as conn:
        current, head = await conn.run_sync(revisions)
    if current != head:
        raise SchemaOutOfDate(
            f"database schema is at {current or 'nothing'}, this code needs {head}: "
            "run `ordergraph migrate` with the same DATABASE_URL"
        )


async def upgrade_to_head(engine: AsyncEngine) -> None:
    """Bring the database to the newest schema; safe to call from several processes at once."""

    def upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Concurrent migrators queue here instead of racing on CREATE TABLE.
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(727274)"))
        command.upgrade(alembic_config(connection), "head")

    async with write_transaction(engine) as conn:
        await conn.run_sync(upgrade)
