"""Engines for both backends, with the transaction control each one needs.

SQLite: the stdlib driver's implicit transactions lose updates under concurrency, so we take
control (isolation_level=None) and emit BEGIN ourselves; writers use ``BEGIN IMMEDIATE`` so a
read-then-write transaction holds the write lock from its first statement (a deferred BEGIN
upgrading to write fails at once with "database is locked", ignoring busy_timeout). WAL lets
readers run beside the one writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import Pool

from domain.eventstore.sqlite_cursor import one_hop_dbapi

# Execution option read by the "begin" hook below.
_SQLITE_BEGIN = "ordergraph_sqlite_begin"
_NO_BEGIN = "NONE"  # a reader's: one statement, in SQLite's own autocommit


def async_url(url: str) -> str:
    """Accept plain URLs (sqlite:///x.db, postgresql://...) and pick the async driver."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    sqlite_busy_seconds: float = 10.0,
    **kwargs: Any,
) -> AsyncEngine:
    url = async_url(url)
    kwargs.setdefault("json_serializer", json_text)
    if make_url(url).drivername == "sqlite+aiosqlite":
        kwargs.setdefault("module", one_hop_dbapi())  # see domain/eventstore/sqlite_cursor.py
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(engine):
        busy_ms = round(sqlite_busy_seconds * 1000)
        _take_control_of_sqlite_transactions(engine, sqlite_synchronous, busy_ms)
    return engine


_JSON_ENCODER = msgspec.json.Encoder()


def json_text(value: Any) -> str:
    """The text of a JSON column's value. msgspec writes it several times faster than
    ``json.dumps`` (a rebuild writes a few JSON values per event; docs/performance.md). What
    it writes differs only where JSON allows (no ``\\uXXXX`` escapes for non-ASCII text)."""
    try:
        return _JSON_ENCODER.encode(value).decode()
    except UnicodeEncodeError:
        # A lone surrogate: json.dumps escapes it, as before, and the database decides
        # (SQLite stores it; PostgreSQL refuses, and the append fails alone).
        return json.dumps(value)


# Option engines, built once per engine: building them per call showed up in profiles.
_OPTION_ENGINES: weakref.WeakKeyDictionary[AsyncEngine, dict[str, AsyncEngine]] = (
    weakref.WeakKeyDictionary()
)


def _with_options(engine: AsyncEngine, role: str, **options: Any) -> AsyncEngine:
    by_role = _OPTION_ENGINES.setdefault(engine, {})
    found = by_role.get(role)
    if found is None:
        found = by_role[role] = engine.execution_options(**options)
    return found


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (same pool) for reads of one statement: no BEGIN and no ROLLBACK round
    trips around them (a single statement sees one snapshot anyway).

    PostgreSQL: autocommit. SQLite: no BEGIN, by our own option. Its connections already run
    in autocommit (isolation_level None, see below), and asking SQLAlchemy for AUTOCOMMIT made
    it switch each connection's isolation level on checkout and back on check-in: three extra
    trips to aiosqlite's thread per read, which doubled the cost of ``order(id)``.
    """
    if is_sqlite(engine):
        return _with_options(engine, "reader", **{_SQLITE_BEGIN: _NO_BEGIN})
    return _with_options(engine, "reader", isolation_level="AUTOCOMMIT")


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (same pool) whose transactions start with BEGIN IMMEDIATE on SQLite."""
    return _with_options(engine, "writer", **{_SQLITE_BEGIN: "IMMEDIATE"})


# One asyncio lock per SQLite pool: see write_transaction.
_SQLITE_WRITE_GATES: weakref.WeakKeyDictionary[Pool, asyncio.Lock] = weakref.WeakKeyDictionary()


@contextlib.asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that will write. Commits on success, rolls back on error.

    SQLite admits one writer at a time, and a writer that finds the lock taken sleeps in
    SQLite's busy handler with growing back-off (up to 100 ms a try), however soon the lock is
    free again. Queueing this process's writers on an asyncio lock first hands the database
    over the moment it is free; the busy handler is then left only for other processes.
    """
    if not is_sqlite(engine):
        async with engine.begin() as conn:
            yield conn
        return
    gate = _SQLITE_WRITE_GATES.setdefault(engine.sync_engine.pool, asyncio.Lock())
    async with gate, writer(engine).begin() as conn:
        yield conn


def _take_control_of_sqlite_transactions(
    engine: AsyncEngine, synchronous: str, busy_ms: int
) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            f"synchronous={synchronous}",
            f"busy_timeout={busy_ms}",  # then "database is locked": an outage (503)
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        mode = options.get(_SQLITE_BEGIN, "DEFERRED")
        if mode == _NO_BEGIN or options.get("isolation_level") == "AUTOCOMMIT":
            return
        conn.exec_driver_sql(f"BEGIN {mode}")
