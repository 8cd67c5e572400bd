"""Projection operations as commands: each GraphQL mutation of an operator is one command,
dispatched through this bus to its one handler (the explicit registry at the bottom), as the
order mutations go through the domain's command bus."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from readmodels import operations
from readmodels.builds import start_build
from readmodels.notifications.messages import Notifier
from readmodels.projection import Projection


@dataclass(frozen=True, slots=True)
class RebuildProjection:
    """Build a new version beside the active one and switch to it once caught up."""

    name: str


@dataclass(frozen=True, slots=True)
class RetryProjection:
    """Retry a failed projection now."""

    name: str


@dataclass(frozen=True, slots=True)
class SkipProjectionEvent:
    """Skip the one event a failed projection is stopped at, on record."""

    name: str
    position: int
    reason: str
    skipped_by: str


OperationCommand = RebuildProjection | RetryProjection | SkipProjectionEvent


class OperationsBus:
    """Raises ``operations.OperationRefused`` when an operation does not apply."""

    def __init__(
        self,
        engine: AsyncEngine,
        projections: Sequence[Projection],
        notifier: Notifier,
        wake_builds: Callable[[], None],  # this process's projector, if it runs one
    ) -> None:
        self.engine = engine
        self.projections = projections
        self.notifier = notifier
        self.wake_builds = wake_builds

    async def dispatch(self, command: OperationCommand) -> None:
        await OPERATION_HANDLERS[type(command)](command, self)


async def rebuild_projection(command: OperationCommand, bus: OperationsBus) -> None:
    assert isinstance(command, RebuildProjection)
    await start_build(bus.engine, operations.projection_named(bus.projections, command.name))
    bus.wake_builds()


async def retry_projection(command: OperationCommand, bus: OperationsBus) -> None:
    assert isinstance(command, RetryProjection)
    await operations.retry(bus.engine, bus.projections, bus.notifier, command.name)


async def skip_projection_event(command: OperationCommand, bus: OperationsBus) -> None:
    assert isinstance(command, SkipProjectionEvent)
    await operations.skip(
        bus.engine,
        bus.projections,
        command.name,
        command.position,
        command.reason,
        command.skipped_by,
    )


OPERATION_HANDLERS: dict[type, Callable[[OperationCommand, OperationsBus], Awaitable[None]]] = {
    RebuildProjection: rebuild_projection,
    RetryProjection: retry_projection,
    SkipProjectionEvent: skip_projection_event,
}
