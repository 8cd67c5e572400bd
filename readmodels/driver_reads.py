"""One-statement reads on the driver's own connection, past SQLAlchemy's statement machinery.

A look-up by key (``order(id)``, ``customer(id)``) is one short statement, and running it
through a SQLAlchemy ``Connection`` (checkout, execution context, cursor adapter, result
object) cost the loop more than the statement did (docs/performance.md). Here SQLAlchemy
compiles the statement once for the engine's dialect, into the driver's SQL, parameter order
and SQLAlchemy's own per-column bind and result processors; it then runs on a connection of
the same pool, handed straight to the driver:

- PostgreSQL: asyncpg's ``fetch``; asyncpg autocommits, so no BEGIN, as on the reader engine;
- SQLite: one hand-off to aiosqlite's thread (``fetch_all``, domain/eventstore/sqlite_cursor.py),
  in SQLite's own autocommit.

Failures are not interpreted here: a connection that failed is dropped from the pool, and the
caller reads again through SQLAlchemy, which answers, or raises, exactly as it always has
(outages included).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class DriverStatement:
    sql: str
    binds: tuple[tuple[str, Processor], ...]  # in the driver's order
    processors: tuple[Processor, ...]  # one per selected column
    row: Callable[..., Any]  # a named tuple of the selected columns' keys

    def parameters(self, values: dict[str, Any]) -> list[Any]:
        return [
            values[name] if process is None else process(values[name])
            for name, process in self.binds
        ]

    def first(self, fetched: Sequence[Sequence[Any]]) -> Any:
        if not fetched:
            return None
        return self.row(
            *(
                value if process is None else process(value)
                for process, value in zip(self.processors, fetched[0], strict=True)
            )
        )


TypeCodes = Callable[[str], Awaitable[Iterable[Any]]]


async def compile_for_driver(
    statement: sa.Select[Any], dialect: Dialect, type_codes: TypeCodes
) -> DriverStatement:
    """``type_codes(sql)``: the driver's type of each column the SQL returns, as SQLAlchemy
    reads them from ``cursor.description`` for its result processors (asyncpg's numeric
    processor needs them)."""
    compiled = statement.compile(dialect=dialect)
    if not compiled.positional or not compiled.positiontup:
        raise ValueError(f"{dialect.name}: expected parameters bound by position")
    binds = tuple(
        (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
        for name in compiled.positiontup
    )
    columns = list(statement.selected_columns)
    processors = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, code)
        for column, code in zip(columns, await type_codes(compiled.string), strict=False)
    )
    row = collections.namedtuple("Row", [column.key for column in columns])  # type: ignore[misc]
    return DriverStatement(compiled.string, binds, processors, row)


class DriverConnection:
    def __init__(self, reads: DriverReads, raw: PoolProxiedConnection) -> None:
        self._reads = reads
        self._raw = raw

    async def first(self, statement: sa.Select[Any], values: dict[str, Any]) -> Any:
        """The statement's first row (a named tuple of its columns), or None."""
        compiled = await self._reads.compiled(statement, self._type_codes)
        parameters = compiled.parameters(values)
        if self._reads.sqlite:
            fetched = await self._raw.dbapi_connection.fetch_all(  # type: ignore[union-attr]
                compiled.sql, parameters
            )
        else:
            fetched = await self._raw.driver_connection.fetch(  # type: ignore[union-attr]
                compiled.sql, *parameters
            )
        return compiled.first(fetched)

    async def _type_codes(self, sql: str) -> Iterable[Any]:
        if self._reads.sqlite:
            return itertools.repeat(None)  # sqlite3 describes no types
        prepared = await self._raw.driver_connection.prepare(sql)  # type: ignore[union-attr]
        return [attribute.type.oid for attribute in prepared.get_attributes()]


class DriverReads:
    """Statements of one engine, compiled once, run on its pool's connections."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._compiled: dict[sa.Select[Any], DriverStatement] = {}

    async def compiled(self, statement: sa.Select[Any], type_codes: TypeCodes) -> DriverStatement:
        found = self._compiled.get(statement)
        if found is None:
            found = await compile_for_driver(statement, self._engine.dialect, type_codes)
            self._compiled[statement] = found
        return found

    @contextlib.asynccontextmanager
    async def connect(self) -> AsyncIterator[DriverConnection]:
        raw = await self._engine.raw_connection()
        # Returning a connection may close it (an overflow one, an invalidated one), which
        # SQLAlchemy's adapters do in a greenlet, as AsyncConnection.close does.
        try:
            yield DriverConnection(self, raw)
        except BaseException:
            # Whatever went wrong, the next reader gets a fresh connection.
            await greenlet_spawn(raw.invalidate)
            raise
        finally:
            await greenlet_spawn(raw.close)
