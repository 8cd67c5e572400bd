"""Projection operations over GraphQL, for staff: rebuild (a new version built beside the
active one by the projector), retry a failed projection now, skip the one event it is stopped
at (on record). The same operations as ``ordergraph rebuild`` and ``ordergraph projections``
(readmodels/operations.py). Staff only (domain/access.py); a skip records the token's
subject as who did it."""

from __future__ import annotations

from typing import Annotated

import strawberry

from domain.access import Action
from graph.context import Context, ProjectionOps
from graph.permissions import allow
from graph.projection_inputs import ProjectionInput, SkipProjectionEventInput
from graph.types import ProjectionStatus
from readmodels import operations
from readmodels.builds import start_build
from readmodels.projection import Projection

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
    return ProjectionStatus.of(found)


def _ops(info: Info) -> ProjectionOps:
    ops = info.context.services.projection_ops
    assert ops is not None, "the app's lifespan builds them"
    return ops


def _who(info: Info) -> str:
    actor = info.context.actor
    return f"{actor.subject} (AUTH=none)" if actor.unrestricted else actor.subject


def _projection(ops: ProjectionOps, name: str) -> Projection:
    for projection in ops.projections:
        if projection.name == name:
            return projection
    known = ", ".join(p.name for p in ops.projections)
    raise operations.OperationRefused(f"no projection {name!r}; known: {known}")


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
        ops = _ops(info)
        try:
            await start_build(ops.engine, _projection(ops, input.name))
        except operations.OperationRefused as refused:
            return ProjectionOperationRefused(message=str(refused))
        ops.wake_builds()
        return await _status(info, input.name)

    @strawberry.mutation(
        description="Retry a failed projection now. Staff only.",
        extensions=[allow(Action.MANAGE_PROJECTIONS)],
    )
    async def retry_projection(
        self, info: strawberry.Info[Context, None], input: ProjectionInput
    ) -> ProjectionOperationResult:
        ops = _ops(info)
        try:
            await operations.retry(ops.engine, ops.projections, ops.notifier, input.name)
        except operations.OperationRefused as refused:
            return ProjectionOperationRefused(message=str(refused))
        return await _status(info, input.name)

    @strawberry.mutation(
        description="Skip the one event a failed projection is stopped at, on record (who, "
        "when, why), shown in `projections` forever after. Staff only.",
        extensions=[allow(Action.MANAGE_PROJECTIONS)],
    )
    async def skip_projection_event(
        self, info: strawberry.Info[Context, None], input: SkipProjectionEventInput
    ) -> ProjectionOperationResult:
        ops = _ops(info)
        try:
            await operations.skip(
                ops.engine,
                ops.projections,
                input.name,
                int(input.position),
                input.reason,
                _who(info),
            )
        except operations.OperationRefused as refused:
            return ProjectionOperationRefused(message=str(refused))
        return await _status(info, input.name)
