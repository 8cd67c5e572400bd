"""What a projection is: the events it is fed (``Envelope``) and the ``Projection`` contract.

A projection applies a whole batch of events in one transaction: it loads the rows the batch
touches, folds the events into them in memory, and writes them back with one upsert per
table (readmodels/rows.py). That keeps a rebuild to a few statements per batch instead of a
few per event.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.events import Event
from readmodels.versions import table_at

Row = dict[str, Any]


class Envelope(msgspec.Struct, frozen=True):
    """A decoded event with where it sits in the store. A frozen Struct rather than a frozen
    dataclass: made once per event read, and a frozen dataclass's ``__init__`` was a twentieth
    of a rebuild's main thread (docs/performance.md)."""

    position: int
    stream_version: int
    event: Event
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)  # command ids, who caused it
    recorded_at: datetime | None = None


class Projection(ABC):
    name: str
    # The version of the code: bump it when ``apply`` or the tables change, and a deploy
    # builds a new version of the tables beside the active one and switches to it.
    version: int = 1
    tables: tuple[sa.Table, ...]  # the definitions of every table it owns (version 1's)
    # The event types it folds (by stored name); None: all. It is fed only these, so an
    # event of another type that cannot be decoded does not stop it.
    handles: frozenset[str] | None = None
    # Which version's tables this instance writes (see ``at``).
    table_version: int = 1

    @abstractmethod
    async def apply(self, conn: AsyncConnection, batch: Sequence[Envelope]) -> None:
        """Fold the batch into the tables (``self.table(...)``), inside the caller's
        transaction."""

    def table(self, definition: sa.Table) -> sa.Table:
        """The table of this instance's version for one of the definitions in ``tables``."""
        return table_at(definition, self.table_version)

    def owned_tables(self) -> tuple[sa.Table, ...]:
        return tuple(self.table(t) for t in self.tables)

    def at(self, version: int) -> Projection:
        """The same projection writing version ``version``'s tables."""
        if version == self.table_version:
            return self
        bound = copy.copy(self)
        bound.table_version = version
        return bound
