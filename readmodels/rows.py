"""Read-model rows in bulk: loading those a batch touches, and upserting them, many a statement.

Projections (readmodels/projection.py) load first, fold in memory, and write last with one
upsert per table; ``upserts_together`` sends a whole batch's upserts in one round trip.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import operator
import re
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.eventstore.engines import json_text
from readmodels.projection import Row


async def load_rows(
    conn: AsyncConnection, table: sa.Table, key: sa.Column[Any], keys: Collection[Any]
) -> dict[Any, Row]:
    rows: dict[Any, Row] = {}
    wanted = list(keys)
    statement = _rows_by_key(table, key.name)
    for start in range(0, len(wanted), 500):  # stay far below bind-parameter limits
        chunk = wanted[start : start + 500]
        result = await conn.execute(statement, {"keys": chunk})
        # dict(zip()) of plain rows: a RowMapping lists its keys again for every row.
        names = list(result.keys())
        at = names.index(key.name)
        rows.update({values[at]: dict(zip(names, values, strict=True)) for values in result})
    return rows


@functools.cache
def _rows_by_key(table: sa.Table, key: str) -> sa.Select[Any]:
    # Built once per table and key, as the upserts' statements are.
    return sa.select(table).where(table.c[key].in_(sa.bindparam("keys", expanding=True)))


async def upsert(
    conn: AsyncConnection, table: sa.Table, rows: Sequence[Row], keys: Sequence[str]
) -> None:
    """Insert each row, or overwrite the row with the same key (of two rows with one key,
    the later wins)."""
    if not rows:
        return
    statements: list[_Statement] = []
    if conn.dialect.name == "postgresql":
        unnest = _unnest_plan(conn.dialect, table, tuple(keys))
        statements.append(_Statement(table.name, unnest.sql, unnest.parameters(rows)))
    else:
        plan = _upsert_plan(conn.dialect, table, tuple(keys))
        values = plan.parameters(rows)
        step = plan.rows_per_statement
        for start in range(0, len(rows), step):
            count = min(step, len(rows) - start)
            chunk = tuple(values[start * plan.width : (start + count) * plan.width])
            statements.append(_Statement(table.name, plan.sql(count), chunk))
    deferred = _deferred.get()
    if deferred is not None and deferred[0] is conn:
        deferred[1].extend(statements)
        return
    for statement in statements:
        await conn.exec_driver_sql(statement.sql, statement.parameters)


class _Statement(NamedTuple):
    table: str
    sql: str
    parameters: tuple[Any, ...]


# The upserts held back by ``upserts_together``: the connection they are for, and them.
_deferred: contextvars.ContextVar[tuple[AsyncConnection, list[_Statement]] | None] = (
    contextvars.ContextVar("deferred_upserts", default=None)
)


@contextlib.asynccontextmanager
async def upserts_together(conn: AsyncConnection) -> AsyncIterator[None]:
    """The upserts made on ``conn`` inside the block, written when it ends in one round trip
    rather than one each: the group-commit writer awaits every round trip of its transaction
    while its requests wait. SQLite: all in one hand-off to the database's thread.
    PostgreSQL: as one statement, each upsert a data-modifying ``WITH`` query (several
    statements if a table comes twice: the queries of one statement see the same snapshot).

    Only for code that does not read what it upserts before the block ends, as projections
    fold first and write last. Nothing is written if the block raises."""
    execute_all = None
    if conn.dialect.name == "sqlite":
        raw = await conn.get_raw_connection()
        execute_all = getattr(raw.dbapi_connection, "execute_all", None)
        if execute_all is None:  # not our one-hop adapter: as they come
            yield
            return
    pending: list[_Statement] = []
    token = _deferred.set((conn, pending))
    try:
        yield
    finally:
        _deferred.reset(token)
    if not pending:
        return
    if execute_all is not None:
        await execute_all([(s.sql, s.parameters) for s in pending])
        return
    for sql, parameters in _with_queries(pending):
        await conn.exec_driver_sql(sql, parameters)


def _with_queries(pending: Sequence[_Statement]) -> list[tuple[str, tuple[Any, ...]]]:
    """PostgreSQL: the statements as few ``WITH w0 AS (...), w1 AS (...) SELECT 1`` as can be,
    their ``$n`` parameters numbered on."""
    groups: list[list[_Statement]] = [[]]
    for statement in pending:
        if any(s.table == statement.table for s in groups[-1]):
            groups.append([])
        groups[-1].append(statement)
    combined = []
    for group in groups:
        if len(group) == 1:
            combined.append((group[0].sql, group[0].parameters))
            continue
        queries: list[str] = []
        parameters: list[Any] = []
        for n, statement in enumerate(group):
            queries.append(f"w{n} AS ({_numbered_from(statement.sql, len(parameters))})")
            parameters += statement.parameters
        combined.append((f"WITH {', '.join(queries)} SELECT 1", tuple(parameters)))
    return combined


@functools.lru_cache(maxsize=256)
def _numbered_from(sql: str, offset: int) -> str:
    return re.sub(r"\$(\d+)", lambda m: f"${int(m.group(1)) + offset}", sql)


# SQLite's default limit on bound values per statement (3.32 and later), and the rows a
# statement takes at most: SQLite keeps each prepared statement (a 4,000-row one is several
# MiB), and longer ones were no faster.
_SQLITE_MAX_VARIABLES = 32766
_MAX_ROWS_PER_STATEMENT = 500


@dataclass(frozen=True, slots=True)
class _UpsertPlan:
    """SQLite: many rows a statement (``INSERT ... VALUES (...), (...) ON CONFLICT``, each
    row applied in turn, so of two rows with one key the later wins), compiled once, with
    each column's own conversion to what the driver takes applied by hand. SQLAlchemy's
    generic per-row parameter processing dominated rebuilds, and ``executemany`` takes the
    interpreter's lock back for every row, which the event loop's thread then waits on
    (docs/performance.md)."""

    head: str  # up to VALUES
    row: str  # one row's placeholders
    tail: str  # ON CONFLICT ...
    width: int  # columns a row
    rows_per_statement: int
    get: Callable[[Row], tuple[Any, ...]]
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]

    def sql(self, rows: int) -> str:
        return _values_sql(self.head, self.row, self.tail, rows)

    def parameters(self, rows: Sequence[Row]) -> list[Any]:
        """Every row's values, flat, in column order."""
        get, converters = self.get, self.converters
        out: list[Any] = []
        if not converters:
            for row in rows:
                out += get(row)
            return out
        for row in rows:
            values = list(get(row))
            for i, convert in converters:
                values[i] = convert(values[i])
            out += values
        return out


@functools.lru_cache(maxsize=256)
def _values_sql(head: str, row: str, tail: str, rows: int) -> str:
    return f"{head} VALUES {', '.join([row] * rows)} {tail}"


@dataclass(frozen=True, slots=True)
class _UnnestPlan:
    """PostgreSQL: every row in one statement, one array per column, ``INSERT ... SELECT
    FROM unnest(...)``. PostgreSQL plans and runs it once, where ``executemany`` runs the
    INSERT once per row (docs/performance.md)."""

    sql: str
    key: Callable[[Row], Any]
    columns: tuple[tuple[str, Callable[[Any], Any] | None], ...]

    def parameters(self, rows: Sequence[Row]) -> tuple[list[Any], ...]:
        # One statement may not change a row twice (ON CONFLICT DO UPDATE): the later wins.
        latest = list({self.key(row): row for row in rows}.values())
        arrays = []
        for name, convert in self.columns:
            values = [row[name] for row in latest]
            arrays.append(values if convert is None else [convert(v) for v in values])
        return tuple(arrays)


@functools.cache
def _unnest_plan(dialect: Dialect, table: sa.Table, keys: tuple[str, ...]) -> _UnnestPlan:
    quote = dialect.identifier_preparer.quote
    names = [c.name for c in table.columns]
    arrays, selected = [], []
    columns: list[tuple[str, Callable[[Any], Any] | None]] = []
    for n, column in enumerate(table.columns, start=1):
        if isinstance(column.type.dialect_impl(dialect), postgresql.JSONB):
            # As text, cast in the statement: no array codec for jsonb is needed.
            arrays.append(f"${n}::text[]")
            selected.append(f"u.{quote(column.name)}::jsonb")
            columns.append((column.name, _json_text_or_none))
        else:
            arrays.append(f"${n}::{column.type.compile(dialect=dialect)}[]")
            selected.append(f"u.{quote(column.name)}")
            processor = column.type.dialect_impl(dialect).bind_processor(dialect)
            columns.append((column.name, processor))
    updates = [f"{quote(n)} = EXCLUDED.{quote(n)}" for n in names if n not in keys]
    on_conflict = f"DO UPDATE SET {', '.join(updates)}" if updates else "DO NOTHING"
    sql = (
        f"INSERT INTO {dialect.identifier_preparer.format_table(table)}"
        f" ({', '.join(quote(n) for n in names)})"
        f" SELECT {', '.join(selected)}"
        f" FROM unnest({', '.join(arrays)}) AS u({', '.join(quote(n) for n in names)})"
        f" ON CONFLICT ({', '.join(quote(k) for k in keys)}) {on_conflict}"
    )
    get = operator.itemgetter(*keys)
    return _UnnestPlan(sql, get, tuple(columns))


def _json_text_or_none(value: Any) -> str | None:
    return None if value is None else json_text(value)


@functools.cache
def _upsert_plan(dialect: Dialect, table: sa.Table, keys: tuple[str, ...]) -> _UpsertPlan:
    insert = sqlite.insert(table)
    updates = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in keys}
    compiled = insert.on_conflict_do_update(index_elements=list(keys), set_=updates).compile(
        dialect=dialect
    )
    names = list(compiled.positiontup or ())
    assert names == [c.key for c in table.columns], names  # one bind per column, in order
    # "INSERT INTO t (...) VALUES (?, ...) ON CONFLICT ...": split around the one row.
    head, _, rest = compiled.string.partition(" VALUES ")
    row, _, tail = rest.partition(") ")
    assert row.count("?") == len(names), compiled.string
    converters = []
    for i, column in enumerate(table.columns):
        impl = column.type.dialect_impl(dialect)
        # JSON: the engine's serializer itself (what the column's processor calls, None too).
        convert = dialect._json_serializer if isinstance(impl, sa.JSON) else None
        convert = convert or impl.bind_processor(dialect)
        if convert is not None:
            converters.append((i, convert))
    get = operator.itemgetter(*names)
    one = len(names) == 1
    return _UpsertPlan(
        head,
        row + ")",
        tail,
        len(names),
        max(1, min(_MAX_ROWS_PER_STATEMENT, _SQLITE_MAX_VARIABLES // len(names))),
        (lambda row: (get(row),)) if one else get,
        tuple(converters),
    )
