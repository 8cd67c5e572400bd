"""Projection operations over GraphQL, for staff: rebuild (a new version built beside the
active one by the projector), retry a failed projection now, skip the one event it is stopped
at (on record). Each mutation is one command through the operations bus
(readmodels/operations_bus.py), the same operations as ``ordergraph rebuild`` and
``ordergraph projections``. Staff only (domain/access.py); a skip records the token's subject
as who did it."""

from __future__ import annotations

from typing import Annotated

import strawberry

from domain.access import Action
from graph.context import Context
from graph.permissions import allow
from graph.projection_inputs import ProjectionInput, SkipProjectionEventInput
from graph.types import ProjectionStatus
from readmodels import operations
from readmodels.operations_bus import (
    OperationCommand,
    RebuildProjection,
    RetryProjection,
    SkipProjectionEvent,
)

Info = strawberry.Info[Context, None]


@strawberry.type(description="The operation does not apply; the message says what is so.")
class ProjectionOperationRefused:
    message: str


ProjectionOutcome = ProjectionStatus | ProjectionOperationRefused
ProjectionOperationResult = Annotated[
    ProjectionOutcome, strawberry.union("ProjectionOperationResult")
]


async def _status(info: Info, name: str) -> ProjectionStatus:
    (found,) = await info.context.services.queries.projection_statuses([name])
    return ProjectionStatus.of(found, inline=info.context.services.inline)


def _who(info: Info) -> str:
    actor = info.context.actor
    return f"{actor.subject} (AUTH=none)" if actor.unrestricted else actor.subject


async def _run(info: Info, command: OperationCommand) -> ProjectionOperationResult:
    bus = info.context.services.projection_ops
    assert bus is not None, "the app's lifespan builds it"
    try:
        await bus.dispatch(command)
    except operations.OperationRefused as refused:
        return ProjectionOperationRefused(message=str(refused))
    return await _status(info, command.name)


@strawberry.type
class ProjectionMutation:
    @strawberry.mutation(
        description="Build a new version of the projection beside the active one (in the "
        "background, by the projector) and switch to it once caught up. Staff only.",
        extensions=[allow(Action.MANAGE_PROJECTIONS)],
    )
    async def rebuild_projection(
        self, info: strawberry.Info[Context, None], input: ProjectionInput
    ) -> ProjectionOperationResult:
        return await _run(info, RebuildProjection(name=input.name))

    @strawberry.mutation(
        description="Retry a failed projection now. Staff only.",
        extensions=[allow(Action.MANAGE_PROJECTIONS)],
    )
    async def retry_projection(
        self, info: strawberry.Info[Context, None], input: ProjectionInput
    ) -> ProjectionOperationResult:
        return await _run(info, RetryProjection(name=input.name))

    @strawberry.mutation(
        description="Skip the one event a failed projection is stopped at, on record (who, "
        "when, why), shown in `projections` forever after. Staff only.",
        extensions=[allow(Action.MANAGE_PROJECTIONS)],
    )
    async def skip_projection_event(
        self, info: strawberry.Info[Context, None], input: SkipProjectionEventInput
    ) -> ProjectionOperationResult:
        command = SkipProjectionEvent(
            name=input.name,
            position=int(input.position),
            reason=input.reason,
            skipped_by=_who(info),
        )
        return await _run(info, command)
