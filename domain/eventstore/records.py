"""What goes into and comes out of the event store."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

JSON = dict[str, Any]


class StreamState(enum.Enum):
    ANY = "any"
    NO_STREAM = "no stream"


# What an appender expects the stream to be at: any version, no stream yet, or exactly N.
ExpectedVersion = int | StreamState


@dataclass(frozen=True, slots=True)
class NewEvent:
    event_type: str
    schema_version: int
    data: JSON
    metadata: JSON
    # The domain event ``data`` was encoded from, when there is one: inline projections fold
    # it in the append's transaction instead of decoding ``data`` again. Never stored.
    source: object | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    position: int
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    data: JSON
    metadata: JSON
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """The idempotency key of an append and a digest of the command that made it."""

    command_id: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class AppendResult:
    stream_id: str
    version: int  # stream version of the last event appended
    position: int  # global position of the last event appended
    duplicate: bool = False  # True: the command id was seen before; nothing was written
