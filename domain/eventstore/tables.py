"""Tables of the event store. Changed only through Alembic migrations (see migrations/)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

metadata = sa.MetaData()

_rfc3339 = msgspec.json.Encoder().encode

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PK = SQLite rowid


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on both backends (SQLite has no zone support)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # On SQLite, each conversion in one step instead of this type's step and then SQLite
    # DATETIME's (the same text, tested): a rebuild converts a time or two per event.
    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        return sqlite_datetime_text

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        return sqlite_datetime_value


def sqlite_datetime_text(value: datetime | None) -> str | None:
    """What SQLite's DATETIME stores for a UTC time: its naive ISO text, with microseconds."""
    if value is None:
        return None
    if value.tzinfo is not UTC:
        if value.tzinfo is None:
            raise ValueError("naive datetime: timestamps must be timezone-aware")
        value = value.astimezone(UTC)
    # msgspec's RFC 3339 text ('"YYYY-MM-DDTHH:MM:SS[.ffffff]Z"') cut down to SQLite's form:
    # a fraction of what isoformat costs on an aware time, and a rebuild formats a few a row.
    text = _rfc3339(value)[1:-2].decode().replace("T", " ", 1)
    return text if value.microsecond else text + ".000000"


def sqlite_datetime_value(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text + "+00:00")  # the naive UTC text stored above
    except ValueError:  # text with an offset of its own, written by someone else
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


events = sa.Table(
    "events",
    metadata,
    sa.Column("position", Position, primary_key=True, autoincrement=True),
    sa.Column("stream_id", sa.String(200), nullable=False),
    sa.Column("stream_version", sa.Integer, nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("schema_version", sa.SmallInteger, nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.Column("metadata", Json, nullable=False, key="meta"),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("stream_id", "stream_version", name="uq_events_stream_version"),
)

# One row per handled command, written in the same transaction as its events: the
# idempotency record. A repeated command id finds its first result here.
commands = sa.Table(
    "commands",
    metadata,
    sa.Column("command_id", sa.String(100), primary_key=True),
    sa.Column("stream_id", sa.String(200), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("stream_version", sa.Integer, nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("recorded_at", UTCDateTime, nullable=False),
)
