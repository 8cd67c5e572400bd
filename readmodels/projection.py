"""What a projection is, and the bulk SQL helpers projections share.

A projection applies a whole batch of events in one transaction: it loads the rows the batch
touches, folds the events into them in memory, and writes them back with one upsert per
table. That keeps a rebuild to a few statements per batch instead of a few per event.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.events import Event

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded event with where it sits in the store."""

    position: int
    stream_version: int
    event: Event
    metadata: dict[str, Any] = field(default_factory=dict)  # command ids, who caused it
    recorded_at: datetime | None = None


class Projection(ABC):
    name: str
    tables: tuple[sa.Table, ...]  # every table it owns: emptied when it is rebuilt
    # The event types it folds (by stored name); None: all. It is fed only these, so an
    # event of another type that cannot be decoded does not stop it.
    handles: frozenset[str] | None = None

    @abstractmethod
    async def apply(self, conn: AsyncConnection, batch: Sequence[Envelope]) -> None:
        """Fold the batch into the tables, inside the caller's transaction."""


async def load_rows(
    conn: AsyncConnection, table: sa.Table, key: sa.Column[Any], keys: Collection[Any]
) -> dict[Any, Row]:
    rows: dict[Any, Row] = {}
    wanted = list(keys)
    for start in range(0, len(wanted), 500):  # stay far below bind-parameter limits
        chunk = wanted[start : start + 500]
        result = await conn.execute(sa.select(table).where(key.in_(chunk)))
        rows.update({row[key.name]: dict(row) for row in result.mappings()})
    return rows


async def upsert(
    conn: AsyncConnection, table: sa.Table, rows: Sequence[Row], keys: Sequence[str]
) -> None:
    """Insert each row, or overwrite the row with the same key."""
    if rows:
        await conn.execute(_upsert_statement(conn.dialect.name, table, tuple(keys)), rows)


@functools.cache
def _upsert_statement(dialect: str, table: sa.Table, keys: tuple[str, ...]) -> Any:
    # Built once per table: constructing ON CONFLICT clauses showed up in profiles.
    insert = sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table)
    updates = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in keys}
    return insert.on_conflict_do_update(index_elements=list(keys), set_=updates)
