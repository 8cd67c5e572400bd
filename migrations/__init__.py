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

from domain.eventstore.engines import write_transaction

HERE = Path(__file__).parent


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


class SchemaOutOfDate(RuntimeError):
    pass


class NotOurDatabase(RuntimeError):
    """The database holds things that ordergraph did not create: migrating it could mix our
    tables into someone else's schema."""


MAINTENANCE_DATABASES = frozenset({"postgres", "template0", "template1"})


async def refuse_foreign(engine: AsyncEngine) -> None:
    """Raise NotOurDatabase for a PostgreSQL maintenance database, or for a database holding
    tables when it is not one of ours (no ``alembic_version`` with one of our revisions)."""

    def inspect(connection: Connection) -> tuple[list[str], str | None, set[str]]:
        names = sa.inspect(connection).get_table_names()
        current = MigrationContext.configure(connection).get_current_revision()
        ours = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
        return names, current, ours

    database = engine.url.database or ""
    if engine.dialect.name == "postgresql" and database in MAINTENANCE_DATABASES:
        raise NotOurDatabase(
            f"{database} is PostgreSQL's maintenance database, not a home for ordergraph: "
            "create one (createdb orders) and point DATABASE_URL at it"
        )
    async with engine.connect() as conn:
        names, current, ours = await conn.run_sync(inspect)
    if current in ours:
        return
    tables = sorted(n for n in names if n != "alembic_version")
    if current is not None:
        raise NotOurDatabase(
            f"database {database} is at migration {current!r}, which is not ordergraph's: "
            "it belongs to another application"
        )
    if tables:
        shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
        raise NotOurDatabase(
            f"database {database} already holds tables ordergraph did not create ({shown})"
        )


def head_revision() -> str | None:
    """The revision this code's migrations end at (reads the migration scripts)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


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
