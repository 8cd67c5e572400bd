"""SQLAlchemy's aiosqlite adapter, with one thread hand-off per statement instead of four
(and one for several writes: ``execute_all``; and one for a read outside SQLAlchemy: ``fetch_all``).

The stock cursor creates an aiosqlite cursor, executes, fetches and closes it, each a round
trip to aiosqlite's worker thread and back through the event loop: about 350 us for a
trivial statement here, against 70 us for one hand-off (``python -m bench.statement_cost``).
This cursor runs all four steps in one call on the worker thread. It queues that call the way
SQLAlchemy's own adapter already does for its isolation-level setter (aiosqlite's ``_tx``
queue and ``_conn``), so it rests on nothing the stock adapter does not.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

T = TypeVar("T")


async def _on_cursor(adapt: AsyncAdapt_dbapi_connection, work: Callable[[sqlite3.Cursor], T]) -> T:
    """``work`` with a short-lived sqlite3 cursor, in one hand-off to the connection's worker
    thread, under the adapter's mutex as its own statements are."""
    connection = cast(aiosqlite.Connection, adapt._connection)
    raw: sqlite3.Connection = cast(Any, connection)._conn

    def run() -> T:
        cursor = raw.cursor()
        try:
            return work(cursor)
        finally:
            cursor.close()

    async with adapt._execute_mutex:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        connection._tx.put_nowait((future, run))
        return await future


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    __slots__ = ("_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: Any) -> None:
        # No aiosqlite cursor at all: each execute uses a short-lived sqlite3 cursor on the
        # worker thread, and keeps only its results.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = cast(Any, None)
        self._soft_closed_memoized = EMPTY_DICT
        self._rows: collections.deque[Any] = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    async def _async_soft_close(self) -> None:
        return  # nothing open on the worker thread

    def close(self) -> None:
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        def run(cursor: sqlite3.Cursor) -> tuple[Any, list[Any], int, int | None]:
            cursor.execute(operation, () if parameters is None else parameters)
            description = cursor.description
            rows = cursor.fetchall() if description else []
            return description, rows, cursor.rowcount, cursor.lastrowid

        outcome = await _on_cursor(self._adapt_connection, run)
        self._description, rows, self._rowcount, self._lastrowid = outcome
        self._rows = collections.deque(rows)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        def run(cursor: sqlite3.Cursor) -> int:
            cursor.executemany(operation, seq_of_parameters)
            return cursor.rowcount

        self._rowcount = await _on_cursor(self._adapt_connection, run)
        self._description = None
        self._rows = collections.deque()


class _Connection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor

    async def execute_all(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> None:
        """Several statements in one hand-off, in order (writes: nothing is fetched)."""

        def run(cursor: sqlite3.Cursor) -> None:
            for operation, parameters in statements:
                cursor.execute(operation, parameters)

        await _on_cursor(self, run)

    async def fetch_all(self, operation: str, parameters: Sequence[Any]) -> list[Any]:
        """One statement's rows in one hand-off, outside SQLAlchemy (readmodels/driver_reads.py)."""
        return await _on_cursor(
            self, lambda cursor: cursor.execute(operation, parameters).fetchall()
        )

    def rollback(self) -> None:
        # SQLAlchemy rolls back every connection it takes back, reads included; with no
        # transaction open, sqlite3 would do nothing, so skip the trip to the worker thread.
        raw: sqlite3.Connection | None = cast(Any, self._connection)._connection
        if raw is not None and not raw.in_transaction:
            return
        super().rollback()


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """Pass as ``module=`` to create_async_engine for ``sqlite+aiosqlite`` URLs."""

    def connect(self, *arg: Any, **kw: Any) -> Any:
        stock = super().connect(*arg, **kw)
        return _Connection(self, stock._connection)


def one_hop_dbapi() -> OneHopDBAPI:
    return OneHopDBAPI(aiosqlite, sqlite3)


__all__ = ["OneHopDBAPI", "one_hop_dbapi"]
