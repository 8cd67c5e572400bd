"""The ports of the write side: what command handlers need from an event store, and what the
GraphQL layer needs from a command bus. Tests and benchmarks fake them against these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from domain.eventstore.records import (
    AppendResult,
    CommandRecord,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
)

if TYPE_CHECKING:
    from domain.commands import Command
    from domain.handlers import CommandResult


class EventStorePort(Protocol):
    async def append(
        self,
        stream_id: str,
        new_events: Sequence[NewEvent],
        expected_version: ExpectedVersion,
        command: CommandRecord | None = None,
    ) -> AppendResult: ...

    async def read_stream(self, stream_id: str, from_version: int = 1) -> list[RecordedEvent]: ...

    async def find_command(self, command: CommandRecord) -> AppendResult | None: ...


class CommandDispatcher(Protocol):
    async def dispatch(self, command: Command) -> CommandResult: ...
