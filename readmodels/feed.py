"""What the projector reads: stored events, decoded lazily, once each, per projection.

The event data is read as text and decoded here, straight from the text into the event
(domain/eventstore/codec.py), rather than by the column type, so that a stored event that
cannot be decoded (malformed JSON, an unknown type or schema version, an upcaster that
raises) fails as that one event, at its position, and only for the projections that handle
its type. The others read past it; a read of the whole batch failing would
stall every projection one event before it, silently.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.eventstore import codec
from domain.eventstore.tables import events
from readmodels.projection import Envelope, Projection

_COLUMNS = (
    events.c.position,
    events.c.stream_version,
    events.c.event_type,
    events.c.schema_version,
    # Text on both backends: PostgreSQL's driver would parse JSONB into dicts in Python.
    sa.cast(events.c.data, sa.Text).label("data"),
    sa.cast(events.c.meta, sa.Text).label("meta"),
    events.c.recorded_at,
)


class StoredEvent(NamedTuple):
    """A row of the events table as read (a tuple: made per row, and cheaply)."""

    position: int
    stream_version: int
    event_type: str
    schema_version: int
    data: str  # JSON text, not yet decoded
    meta: str  # the same, for the metadata (who caused it: order history)
    recorded_at: datetime


def decode_json(text: str) -> Any:
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)  # what msgspec refuses and json reads: lone surrogates


class PoisonedEvent(Exception):
    """A stored event that cannot be read as a domain event."""

    def __init__(self, position: int, cause: BaseException) -> None:
        super().__init__(f"event at position {position} cannot be decoded: {cause!r}")
        self.position = position
        self.cause = cause


async def read_stored_after(conn: AsyncConnection, after: int, limit: int) -> list[StoredEvent]:
    query = sa.select(*_COLUMNS).where(events.c.position > after).order_by(events.c.position)
    rows = await conn.execute(query.limit(limit))
    return list(map(StoredEvent._make, rows))


class Batch:
    """One read of the store, shared by the projections fed from it."""

    def __init__(self, stored: Sequence[StoredEvent]) -> None:
        self.stored = stored
        self._decoded: list[Envelope | None] = [None] * len(stored)  # by index in ``stored``

    @property
    def last(self) -> int:
        return self.stored[-1].position

    def for_projection(
        self, projection: Projection, after: int, skipped: Collection[int] = ()
    ) -> list[Envelope]:
        """The events after ``after`` that the projection handles, decoded, but for those at
        ``skipped`` positions (on record, see readmodels/operations.py); raises
        PoisonedEvent at the first of them that cannot be decoded."""
        handled = projection.handles
        decoded, envelope = self._decoded, self._envelope
        return [
            decoded[i] or envelope(i, stored)
            for i, stored in enumerate(self.stored)
            if stored.position > after
            and (handled is None or stored.event_type in handled)
            and stored.position not in skipped
        ]

    def _envelope(self, index: int, stored: StoredEvent) -> Envelope:
        try:
            event = codec.decode(stored.event_type, stored.schema_version, stored.data)
            meta = decode_json(stored.meta)
        except Exception as error:
            raise PoisonedEvent(stored.position, error) from error
        found = Envelope(stored.position, stored.stream_version, event, meta, stored.recorded_at)
        self._decoded[index] = found
        return found
