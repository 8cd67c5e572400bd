"""Typed errors of the write side. Each says what was wrong in terms a caller can act on."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every expected failure on the write side."""


class RuleViolated(DomainError):
    """A business rule of the Order aggregate was broken; nothing was appended."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(f"{rule}: {message}")
        self.rule = rule
        self.message = message


class OrderNotFound(DomainError):
    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id} does not exist")
        self.order_id = order_id


class VersionConflict(DomainError):
    """The stream was not at the version the writer expected.

    ``expected`` is the caller's expectation as text ("any", "no stream" or a number) and
    ``actual`` the stream's version when the append was attempted (0: no stream).
    """

    def __init__(self, stream_id: str, expected: int | None, actual: int) -> None:
        shown = "no stream" if expected is None else str(expected)
        super().__init__(f"stream {stream_id} is at version {actual}, expected {shown}")
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class AppendRefused(DomainError):
    """The database refused to store an append (a value it cannot hold); nothing of it was
    written. The detail is in the log, not here: it is the driver's, not the caller's."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"the database refused the events for stream {stream_id!r}")
        self.stream_id = stream_id


class CommandIdReused(DomainError):
    """A command id that was already used, sent again with a different payload."""

    def __init__(self, command_id: str) -> None:
        super().__init__(f"command id {command_id} was already used for a different command")
        self.command_id = command_id


class UnknownCommand(DomainError):
    def __init__(self, command_type: str) -> None:
        super().__init__(f"no handler is registered for command {command_type}")
        self.command_type = command_type


class UnknownEventType(DomainError):
    def __init__(self, event_type: str, schema_version: int) -> None:
        super().__init__(f"cannot read event {event_type} v{schema_version}")
        self.event_type = event_type
        self.schema_version = schema_version
