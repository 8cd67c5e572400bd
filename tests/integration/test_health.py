"""/healthz and /readyz over real HTTP, on both databases: ready, schema behind, a projection
that failed, one that stalled, and one that lags but keeps moving."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.engines import write_transaction
from domain.eventstore.store import EventStore
from graph.runtime.health import projection_health
from readmodels.names import PROJECTION_NAMES
from readmodels.projector import Projector
from readmodels.tables import checkpoints
from tests.support.factories import place_order
from tests.support.graphql import Server
from tests.support.ops import running

DEADLINE = 20.0  # generous: the box is shared


async def _readyz(server: Server) -> tuple[int, dict[str, Any]]:
    response = await server.http.get("/readyz")
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def _readyz_until(server: Server, status: int) -> dict[str, Any]:
    async with asyncio.timeout(DEADLINE):
        while True:
            code, body = await _readyz(server)
            if code == status:
                return body
            await asyncio.sleep(0.05)


async def _place_behind_the_projectors_back(database_url: str, count: int) -> int:
    """Append through a store of our own: nothing in the server hears of these events, so
    only its poll (an hour away in these tests) would make its projector look."""
    from domain.bus import build_bus
    from domain.eventstore.engines import create_engine

    engine = create_engine(database_url)
    try:
        bus = build_bus(EventStore(engine))
        for _ in range(count):
            result = await bus.dispatch(place_order())
        return result.position
    finally:
        await engine.dispose()


async def test_a_live_server_is_alive_and_ready(engine: AsyncEngine, database_url: str) -> None:
    async with running(engine, database_url) as server:
        alive = await server.http.get("/healthz")
        assert (alive.status_code, alive.json()) == (200, {"status": "alive"})
        code, body = await _readyz(server)
    assert code == 200, body
    assert body["status"] == "ready"
    assert body["failed"] == []
    assert set(body["checks"]) == {"database", "schema", "notifier", "projections", "read_targets"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["schema"]["at"] == body["checks"]["schema"]["expected"]


async def test_a_stalled_projection_makes_the_server_unready_until_it_moves(
    engine: AsyncEngine, database_url: str
) -> None:
    async with running(engine, database_url, poll_interval=3600, stall_seconds=0.3) as server:
        head = await _place_behind_the_projectors_back(database_url, 3)
        body = await _readyz_until(server, 503)
        assert body["status"] == "unready"
        assert body["failed"] == ["projections"]
        projections = body["checks"]["projections"]
        assert sorted(projections["stalled"]) == sorted(PROJECTION_NAMES)
        assert projections["head"] == head
        views = projections["projections"]["order_views"]
        assert views["lag"] == 3
        assert views["stalled"] is True
        assert views["lag_seconds"] >= 0.3  # reported rounded to 3 places: 0.3004 -> 0.3

        # A write through the server wakes its projector: caught up, ready again.
        accepted = await server.place()
        assert accepted["__typename"] == "CommandAccepted"
        body = await _readyz_until(server, 200)
    assert body["checks"]["projections"]["stalled"] == []


async def test_a_failed_projection_makes_the_server_unready(
    engine: AsyncEngine, database_url: str
) -> None:
    async with running(engine, database_url) as server:
        accepted = await server.place()
        await server.gql(
            "query($p: Position) { projections(atLeast: $p) { name } }",
            {"p": accepted["position"]},
        )
        async with write_transaction(engine) as conn:
            await conn.execute(
                checkpoints.update()
                .where(checkpoints.c.name == "daily_sales")
                .values(state="failed", error="ValueError('boom')", error_position=1)
            )
        code, body = await _readyz(server)
    assert code == 503
    assert body["checks"]["projections"]["failed"] == ["daily_sales"]
    assert body["checks"]["projections"]["projections"]["daily_sales"]["error"] == (
        "ValueError('boom')"
    )


async def test_a_schema_behind_the_code_makes_the_server_unready(
    engine: AsyncEngine, database_url: str
) -> None:
    async with running(engine, database_url) as server:
        async with write_transaction(engine) as conn:
            expected = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
        try:
            code, body = await _readyz(server)
        finally:
            async with write_transaction(engine) as conn:
                await conn.execute(
                    sa.text("UPDATE alembic_version SET version_num = :v"), {"v": expected}
                )
    assert code == 503
    assert body["failed"] == ["schema"]
    assert body["checks"]["schema"] == {"ok": False, "at": "0001", "expected": expected}


async def _age(engine: AsyncEngine, hours: float) -> None:
    """Make every event and checkpoint look ``hours`` old."""
    past = datetime.now(UTC) - timedelta(hours=hours)
    async with write_transaction(engine) as conn:
        await conn.execute(sa.text("UPDATE events SET recorded_at = :t"), {"t": past})
        await conn.execute(checkpoints.update().values(updated_at=past))


async def test_lagging_but_moving_is_healthy_and_unmoved_is_stalled(
    engine: AsyncEngine, store: EventStore, projector: Projector
) -> None:
    from domain.bus import build_bus

    bus = build_bus(store)
    for _ in range(5):
        await bus.dispatch(place_order())
    from readmodels.projector import ensure_checkpoints

    await ensure_checkpoints(engine, projector.projections)
    await _age(engine, hours=1)

    head, found = await projection_health(engine, stall_seconds=60, within=10)
    views = next(p for p in found if p.name == "order_views")
    assert (head, views.lag, views.stalled) == (5, 5, True)
    assert views.lag_seconds >= 3600 - 60

    # One event projected now: still an hour behind, but moving, so not stalled.
    assert await projector.advance(projector.projections["order_views"], 1) == 1
    head, found = await projection_health(engine, stall_seconds=60, within=10)
    views = next(p for p in found if p.name == "order_views")
    assert (views.lag, views.stalled) == (4, False)
    assert views.lag_seconds >= 3600 - 60
    assert views.idle_seconds < 60


@pytest.mark.parametrize("caught_up", [True, False])
async def test_a_projection_at_the_head_is_never_stalled(
    engine: AsyncEngine, store: EventStore, projector: Projector, caught_up: bool
) -> None:
    from domain.bus import build_bus

    if not caught_up:  # no events at all
        from readmodels.projector import ensure_checkpoints

        await ensure_checkpoints(engine, projector.projections)
    else:
        await build_bus(store).dispatch(place_order())
        await projector.catch_up("order_views")
        await projector.catch_up("customer_summaries")
        await projector.catch_up("daily_sales")
    await _age(engine, hours=1)
    _, found = await projection_health(engine, stall_seconds=1, within=10)
    assert [p.stalled for p in found] == [False, False, False]
    assert [p.lag_seconds for p in found] == [0, 0, 0]


async def test_a_dead_database_makes_the_server_unready_but_alive() -> None:
    from domain.eventstore.engines import create_engine
    from tests.support.ops import scrape, value
    from tests.support.private_postgres import private_postgres

    async with private_postgres() as pg:
        engine = create_engine(pg.url)
        try:
            async with running(engine, pg.url, db_connect_timeout=2) as server:
                code, _ = await _readyz(server)
                assert code == 200
                await pg.stop("immediate")
                code, body = await _readyz(server)
                alive = await server.http.get("/healthz")
                samples = await scrape(server.http)
        finally:
            await engine.dispose()
    assert code == 503
    assert body["failed"][:1] == ["database"]
    assert set(body["failed"]) >= {"database", "schema", "projections"}
    assert body["checks"]["schema"] == {"ok": False, "error": "database unreachable"}
    assert alive.status_code == 200
    assert value(samples, "ordergraph_database_up") == 0
