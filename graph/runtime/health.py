"""``/healthz`` (the process answers) and ``/readyz`` (it can serve), with JSON saying which
check failed.

Readiness checks: the database answers; its schema is the revision this code was built for;
the notifier holds its LISTEN connection (PostgreSQL); and, where this process runs a
projector, no projection is failed or stalled. Stalled means behind the head with work that
has waited longer than STALL_SECONDS and a checkpoint that has not moved for as long: a
projection that lags but keeps moving is busy, not stuck.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse

from domain.eventstore.engines import reader
from domain.eventstore.store import head_on
from domain.eventstore.tables import events
from integration.relay import RELAY_NAME
from readmodels.notifications.messages import Notifier
from readmodels.read_targets import ReadTargets
from readmodels.tables import checkpoints


@dataclass(frozen=True)
class Operations:
    """What the operations endpoints need, built by the app's lifespan."""

    engine: AsyncEngine
    notifier: Notifier
    schema_revision: str | None  # the revision this code expects
    runs_projector: bool
    stall_seconds: float
    check_timeout: float
    reads: ReadTargets | None = None


@dataclass(frozen=True, slots=True)
class ProjectionHealth:
    name: str
    position: int
    head: int
    lag: int  # events
    lag_seconds: float  # age of the oldest event not yet projected
    idle_seconds: float  # since the checkpoint last changed
    state: str
    error: str | None
    stalled: bool


_FIRST_AFTER = (
    sa.select(events.c.recorded_at)
    .where(events.c.position > sa.bindparam("after"))
    .order_by(events.c.position)
    .limit(1)
)


async def projection_health(
    engine: AsyncEngine, stall_seconds: float, *, within: float, now: datetime | None = None
) -> tuple[int, list[ProjectionHealth]]:
    """The head and each projection's health, in a few indexed reads."""
    now = now or datetime.now(UTC)
    async with asyncio.timeout(within), reader(engine).connect() as conn:
        head = await head_on(conn)
        rows = (await conn.execute(sa.select(checkpoints).order_by(checkpoints.c.name))).all()
        found = []
        for row in rows:
            lag_seconds = 0.0
            if row.position < head:
                oldest = await conn.scalar(_FIRST_AFTER, {"after": row.position})
                if oldest is not None:
                    lag_seconds = max((now - oldest).total_seconds(), 0.0)
            idle = max((now - row.updated_at).total_seconds(), 0.0)
            stalled = row.position < head and min(lag_seconds, idle) > stall_seconds
            found.append(
                ProjectionHealth(
                    row.name,
                    row.position,
                    head,
                    max(head - row.position, 0),
                    round(lag_seconds, 3),
                    round(idle, 3),
                    row.state,
                    row.error,
                    stalled,
                )
            )
    return head, found


async def _database(ops: Operations) -> dict[str, Any]:
    async with asyncio.timeout(ops.check_timeout), reader(ops.engine).connect() as conn:
        await conn.exec_driver_sql("SELECT 1")
    return {"ok": True}


async def _schema(ops: Operations) -> dict[str, Any]:
    async with asyncio.timeout(ops.check_timeout), reader(ops.engine).connect() as conn:
        current = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
    return {"ok": current == ops.schema_revision, "at": current, "expected": ops.schema_revision}


async def _notifier(ops: Operations) -> dict[str, Any]:
    return {"ok": bool(getattr(ops.notifier, "connected", True))}


async def _projections(ops: Operations) -> dict[str, Any]:
    if not ops.runs_projector:
        return {"ok": True, "skipped": "no projector in this process (RUN_PROJECTOR=false)"}
    head, found = await projection_health(ops.engine, ops.stall_seconds, within=ops.check_timeout)
    # The integration relay is listed but never makes the process unready: with the broker
    # away, commands and reads go on, and taking the process out would stop them too.
    judged = [p for p in found if p.name != RELAY_NAME]
    stalled = [p.name for p in judged if p.stalled]
    failed = [p.name for p in judged if p.state == "failed"]
    return {
        "ok": not stalled and not failed,
        "head": head,
        "stalled": stalled,
        "failed": failed,
        "stall_seconds": ops.stall_seconds,
        "projections": {
            p.name: {k: v for k, v in asdict(p).items() if k not in ("name", "head")} for p in found
        },
    }


async def _read_targets(ops: Operations) -> dict[str, Any]:
    """Standbys (READ_DATABASE_URLS), as their last health check found them. Unready only
    when queries have nowhere to go: no standby in use and the primary may not be read."""
    reads = ops.reads
    if reads is None or not reads.standbys:
        return {"ok": True, "skipped": "queries read the primary (no READ_DATABASE_URLS)"}
    in_use = [t.name for t in reads.standbys if t.in_use]
    targets = {
        t.name: {
            "in_use": t.in_use,
            "reachable": t.reachable,
            "lag_seconds": t.lag_seconds,
            "projections": {
                name: {"position": s.position, "lag": s.lag}
                for name in reads.names
                for s in reads.statuses(name)
                if s.target == t.name
            },
        }
        for t in reads.standbys
    }
    return {
        "ok": bool(in_use) or reads.primary_fallback,
        "in_use": in_use,
        "primary_fallback": reads.primary_fallback,
        "max_lag_seconds": reads.max_lag_seconds,
        "targets": targets,
    }


CHECKS = {
    "database": _database,
    "schema": _schema,
    "notifier": _notifier,
    "projections": _projections,
    "read_targets": _read_targets,
}


async def readiness(ops: Operations) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, check in CHECKS.items():
        if name in ("schema", "projections") and not results["database"]["ok"]:
            results[name] = {"ok": False, "error": "database unreachable"}
            continue
        try:
            results[name] = await check(ops)
        except Exception as error:  # each failure is an answer, not a crash of the probe
            reason = "timed out" if isinstance(error, TimeoutError) else str(error).split("\n")[0]
            results[name] = {"ok": False, "error": reason or type(error).__name__}
    failed = [name for name, result in results.items() if not result["ok"]]
    return {"status": "unready" if failed else "ready", "failed": failed, "checks": results}


async def readyz(request: Request) -> JSONResponse:
    answer = await readiness(request.app.state.operations)
    return JSONResponse(answer, status_code=503 if answer["failed"] else 200)


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "alive"})
