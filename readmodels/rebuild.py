"""Rebuilds with zero downtime (``ordergraph rebuild``): a new version of each projection, of
the same code, is built beside the active version from the first event and switched to once
it has caught up (readmodels/builds.py). The active version keeps serving and is never
touched.

An interrupted rebuild (Ctrl-C, kill -9) leaves the new version "building" at its own
checkpoint, its tables holding exactly what that checkpoint says. Whoever builds next carries
on from there: the projector of ``serve`` or ``project`` (at once after Ctrl-C, which gives
the lease up; after kill -9 once the lease is found dead or expired), or ``rebuild`` again.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.engines import write_transaction
from domain.eventstore.store import head_on
from readmodels.builds import (
    BUILDING,
    Builder,
    BuildLost,
    Key,
    ensure_versions,
    start_build,
    versions,
)
from readmodels.notifications.messages import Notifier
from readmodels.projection import Projection

Progress = Callable[[int, int, bool], None]  # (position reached, head, built by us)
FOLLOW_SECONDS = 0.5  # how often a rebuild that another process builds looks at its progress


@dataclass(frozen=True, slots=True)
class Rebuilt:
    versions: dict[str, int]  # the version built (active now) of each projection
    resumed_from: dict[str, int]  # where each one started: 0, or a build's checkpoint
    replayed: int  # events read by this process (0 when another one built it)
    built_here: bool


async def rebuild(
    engine: AsyncEngine,
    projections: Sequence[Projection],
    notifier: Notifier,
    *,
    batch_size: int = 5000,
    progress: Progress | None = None,
    builder: Builder | None = None,
) -> Rebuilt:
    """Build a new version of each projection together (each event read and decoded once),
    or resume the build under way, and switch to each once caught up."""
    await ensure_versions(engine, projections)
    builder = builder or Builder(engine, projections, notifier, batch_size=batch_size)
    keys: list[Key] = []
    for projection in projections:
        number, _ = await start_build(engine, projection, builder)
        keys.append((projection.name, number))
    started = await _positions(engine, keys)
    try:
        replayed = await _build(engine, builder, keys, progress)
        built_here = True
    except BuildLost:
        await builder.release()
        await _follow(engine, keys, progress)
        replayed, built_here = 0, False
    finally:
        await builder.release()
    return Rebuilt(dict(keys), {k[0]: p for k, p in started.items()}, replayed, built_here)


async def _build(
    engine: AsyncEngine, builder: Builder, keys: list[Key], progress: Progress | None
) -> int:
    for key in keys:
        holder = await builder.claim(*key)
        if holder is not None:
            raise BuildLost(f"version {key[1]} of {key[0]} is being built by {holder}")
    pending, replayed = list(keys), 0
    while pending:
        step = await builder.step(*pending)
        replayed += step.applied
        pending = [key for key in pending if key not in step.switched]
        if progress is not None:
            reached = min((step.positions[k] for k in pending), default=None)
            head = await _head(engine)
            progress(head if reached is None else reached, head, True)
    return replayed


async def _follow(engine: AsyncEngine, keys: list[Key], progress: Progress | None) -> None:
    """Another process builds them: show its progress until every one is switched to."""
    while True:
        positions = await _positions(engine, keys, building_only=True)
        head = await _head(engine)
        if progress is not None:
            progress(min(positions.values(), default=head), head, False)
        if not positions:
            return
        await asyncio.sleep(FOLLOW_SECONDS)


async def _positions(
    engine: AsyncEngine, keys: list[Key], *, building_only: bool = False
) -> dict[Key, int]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(versions.c.name, versions.c.version, versions.c.position).where(
                    versions.c.status == BUILDING
                )
            )
            if building_only
            else await conn.execute(
                sa.select(versions.c.name, versions.c.version, versions.c.position)
            )
        )
        found = {(r.name, r.version): r.position for r in rows}
    return {key: found[key] for key in keys if key in found}


async def _head(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return await head_on(conn)


INTERRUPTED_NOTE = "rebuild interrupted; the projector or the next rebuild resumes it from here"


async def mark_interrupted(engine: AsyncEngine, names: Sequence[str]) -> dict[str, int]:
    """Say so on the builds of an interrupted rebuild, and give up this process's leases on
    them so the projector goes on at once; returns where each one stopped."""
    mine = f"{socket.gethostname()}:{os.getpid()}:%"
    async with write_transaction(engine) as conn:
        building = sa.and_(versions.c.name.in_(names), versions.c.status == BUILDING)
        await conn.execute(
            versions.update()
            .where(building)
            .values(note=INTERRUPTED_NOTE, updated_at=datetime.now(UTC))
        )
        await conn.execute(
            versions.update()
            .where(building, versions.c.builder.like(mine))
            .values(builder=None, lease_until=None)
        )
        rows = await conn.execute(sa.select(versions.c.name, versions.c.position).where(building))
        return {row.name: row.position for row in rows}
