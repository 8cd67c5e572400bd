"""What an operator does about a failed projection, from the CLI or over GraphQL: retry it
now, or skip the one event it is stopped at. A skip is kept on record (who, when, why) and
shown in ``projections`` forever after; nothing is ever skipped without one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.engines import write_transaction
from domain.eventstore.tables import events
from readmodels.builds import BUILDING, FAILED, LIVE, versions
from readmodels.notifications.messages import Notifier
from readmodels.projection import Projection
from readmodels.projector import ProjectionFailed, Projector
from readmodels.tables import checkpoints, projection_skips

MAX_REASON = 500


class OperationRefused(ValueError):
    """The operation does not apply: the message says what is the case instead."""


@dataclass(frozen=True, slots=True)
class Skipped:
    name: str
    position: int
    versions: list[int]  # the versions that were stopped there and now go on
    event_type: str
    reason: str
    skipped_by: str
    skipped_at: datetime


def projection_named(projections: Sequence[Projection], name: str) -> Projection:
    for projection in projections:
        if projection.name == name:
            return projection
    known = ", ".join(p.name for p in projections)
    raise OperationRefused(f"no projection {name!r}; known: {known}")


async def retry(
    engine: AsyncEngine, projections: Sequence[Projection], notifier: Notifier, name: str
) -> list[int]:
    """Retry a failed projection now: its active version here, at once (the checkpoint's
    lock keeps it exactly once beside a running projector), and failed builds of it by
    marking them for their builder to try again at once. Returns the versions retried."""
    projection = projection_named(projections, name)
    now = datetime.now(UTC)
    async with write_transaction(engine) as conn:
        active = (
            await conn.execute(sa.select(checkpoints).where(checkpoints.c.name == name))
        ).first()
        builds = (
            await conn.execute(
                versions.update()
                .where(
                    versions.c.name == name,
                    versions.c.status == BUILDING,
                    versions.c.state == FAILED,
                )
                .values(state=LIVE, note=f"retry asked at {now.isoformat()}", updated_at=now)
                .returning(versions.c.version)
            )
        ).all()
    retried = [row.version for row in builds]
    if active is not None and active.state == FAILED:
        retried.insert(0, active.version)
        projector = Projector(engine, [projection], notifier)
        try:
            while await projector.advance(projection, projector.batch_size):
                pass
        except ProjectionFailed:
            pass  # recorded again, with the error as it is now
    if not retried:
        state = "nothing" if active is None else f"{active.state} at {active.position}"
        raise OperationRefused(f"{name} has nothing failed to retry: it is {state}")
    return retried


async def skip(
    engine: AsyncEngine,
    projections: Sequence[Projection],
    name: str,
    position: int,
    reason: str,
    who: str,
) -> Skipped:
    """Skip exactly the event at ``position`` for every version of the projection stopped
    there, on record."""
    projection_named(projections, name)
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        raise OperationRefused(f"a reason is required (at most {MAX_REASON} characters)")
    now = datetime.now(UTC)
    async with write_transaction(engine) as conn:
        active = (
            await conn.execute(
                sa.select(checkpoints).where(checkpoints.c.name == name).with_for_update()
            )
        ).first()
        builds = (
            await conn.execute(
                sa.select(versions)
                .where(versions.c.name == name, versions.c.status == BUILDING)
                .with_for_update()
            )
        ).all()
        event_type = await conn.scalar(
            sa.select(events.c.event_type).where(events.c.position == position)
        )
        stopped = []
        if active is not None and active.state == FAILED and active.error_position == position:
            stopped.append((active.version, active.position))
        stopped += [
            (b.version, b.position)
            for b in builds
            if b.state == FAILED and b.error_position == position
        ]
        if event_type is None or not stopped:
            raise OperationRefused(_not_stopped(name, position, active, builds))
        for _, at in stopped:
            between = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(events)
                .where(events.c.position > at, events.c.position < position)
            )
            if between:
                raise OperationRefused(
                    f"{name} has {between} events before position {position} still to apply: "
                    "retry it first"
                )
        numbers = [number for number, _ in stopped]
        await conn.execute(
            projection_skips.insert().values(
                name=name,
                position=position,
                version=numbers[0],
                event_type=event_type,
                reason=reason,
                skipped_by=who,
                skipped_at=now,
            )
        )
        passed = {"state": LIVE, "error": None, "error_position": None, "updated_at": now}
        if active is not None and active.version in numbers:
            await conn.execute(
                checkpoints.update()
                .where(checkpoints.c.name == name)
                .values(position=position, **passed)
            )
        await conn.execute(
            versions.update()
            .where(
                versions.c.name == name,
                versions.c.status == BUILDING,
                versions.c.version.in_(numbers),
            )
            .values(position=position, **passed)
        )
    return Skipped(name, position, numbers, event_type, reason, who, now)


def _not_stopped(name: str, position: int, active: Any, builds: Sequence[Any]) -> str:
    where = []
    for v in ([active] if active is not None else []) + list(builds):
        stopped = f" (stopped at {v.error_position})" if v.state == FAILED else ""
        where.append(f"version {v.version} is {v.state} at {v.position}{stopped}")
    return f"{name} is not stopped at position {position}: " + ("; ".join(where) or "no versions")
