"""Tables per projection version: version 1 has the tables the migrations made
(``order_views``); version N > 1 has copies named ``order_views_vN``, made on demand from the
same definitions, so that a new version is built beside the active one and never in it."""

from __future__ import annotations

import functools
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

# Not the migrations' metadata: these tables come and go with the versions, not with Alembic.
_by_version = sa.MetaData()


@functools.cache
def table_at(definition: sa.Table, version: int) -> sa.Table:
    """The table ``definition`` as version ``version`` of its projection has it."""
    if version == 1:
        return definition
    suffix = f"_v{version}"
    columns = [
        sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable)
        for c in definition.columns
    ]
    # Index names are unique per schema (PostgreSQL): each version's get its suffix too.
    indexes = [
        sa.Index(f"{index.name}{suffix}", *(c.name for c in index.columns), unique=index.unique)
        for index in definition.indexes
    ]
    return sa.Table(definition.name + suffix, _by_version, *columns, *indexes)


async def create_tables(conn: AsyncConnection, tables: Iterable[sa.Table]) -> None:
    """Create the tables afresh (whatever an abandoned attempt left under the name goes),
    without their secondary indexes: a build fills them faster without, and makes them
    with ``create_indexes`` once it reaches the head, before it switches."""
    await drop_tables(conn, tables)
    await conn.run_sync(_create_bare, list(tables))


async def create_indexes(conn: AsyncConnection, tables: Iterable[sa.Table]) -> None:
    await conn.run_sync(_create_indexes, list(tables))


async def ensure_tables(conn: AsyncConnection, tables: Iterable[sa.Table]) -> None:
    await conn.run_sync(_create, list(tables), True)


async def drop_tables(conn: AsyncConnection, tables: Iterable[sa.Table]) -> None:
    await conn.run_sync(_drop, list(tables))


def _create(sync: Connection, tables: list[sa.Table], checkfirst: bool) -> None:
    for table in tables:
        table.create(sync, checkfirst=checkfirst)


def _create_bare(sync: Connection, tables: list[sa.Table]) -> None:
    for table in tables:
        indexes = set(table.indexes)
        table.indexes.clear()
        try:
            table.create(sync)
        finally:
            table.indexes.update(indexes)
        if sync.dialect.name == "postgresql":
            # As for the migrations' tables (r18_vacuum_truncate): a VACUUM truncating the
            # end pages would cancel the queries reading this table on hot standbys.
            sync.exec_driver_sql(f'ALTER TABLE "{table.name}" SET (vacuum_truncate = false)')


def _create_indexes(sync: Connection, tables: list[sa.Table]) -> None:
    for table in tables:
        for index in table.indexes:
            index.create(sync, checkfirst=True)


def _drop(sync: Connection, tables: list[sa.Table]) -> None:
    for table in tables:
        table.drop(sync, checkfirst=True)
