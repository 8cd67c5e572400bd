"""A waiter never depends on one notification: lost NOTIFYs (a dropped listener, a database
restart) delay an answer at most until the next re-read of the checkpoints, never forever."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import build_bus
from domain.eventstore.engines import create_engine
from domain.eventstore.store import EventStore
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.notifications.messages import Notifier
from readmodels.notifications.postgres import PostgresNotifier
from readmodels.projector import Projector, ensure_checkpoints
from readmodels.registry import all_projections
from readmodels.tables import checkpoints
from tests.support.factories import place_order
from tests.support.observed import ObservedWaiter
from tests.support.private_postgres import PrivatePostgres, private_postgres
from tests.support.serving import graphql_ws, serve_process

TIMEOUT = 20.0


async def advance_silently(engine: AsyncEngine, position: int) -> None:
    """Move every checkpoint without telling anyone: a notification that was lost."""
    async with engine.begin() as conn:
        await conn.execute(checkpoints.update().values(position=position))


async def test_a_long_wait_rereads_the_checkpoints_when_nothing_is_heard(
    engine: AsyncEngine, notifier: InProcessNotifier
) -> None:
    await ensure_checkpoints(engine, PROJECTION_NAMES)
    waiter = ObservedWaiter(engine, notifier, first_recheck=0.05, max_recheck=0.2)
    waiting = asyncio.create_task(waiter.wait_for(5, within=None))
    await asyncio.wait_for(waiter.read.wait(), TIMEOUT)

    await advance_silently(engine, 5)

    assert await asyncio.wait_for(waiting, TIMEOUT) is True
    assert waiter.reads >= 2


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_waiter_rereads_the_checkpoints_when_its_listener_reconnects(
    engine: AsyncEngine, postgres_url: str
) -> None:
    await ensure_checkpoints(engine, PROJECTION_NAMES)
    channel = f"ordergraph_test_{uuid.uuid4().hex[:12]}"
    async with PostgresNotifier(postgres_url, channel) as notifier:
        # Re-reads on a timer would take an hour: only the reconnect can wake this waiter.
        waiter = ObservedWaiter(engine, notifier, first_recheck=3600, max_recheck=3600)
        waiting = asyncio.create_task(waiter.wait_for(5, within=None))
        await asyncio.wait_for(waiter.read.wait(), TIMEOUT)
        await advance_silently(engine, 5)

        await _terminate_listeners(postgres_url, channel)

        assert await asyncio.wait_for(waiting, TIMEOUT) is True
        assert notifier.listen_generation == 2
        assert waiter.reads == 2


async def _terminate_listeners(url: str, channel: str) -> None:
    admin = await asyncpg.connect(url)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = $1",
            f'LISTEN "{channel}"',
        )
    finally:
        await admin.close()
    assert killed == 1


@pytest.fixture
async def own_postgres() -> AsyncIterator[PrivatePostgres]:
    async with private_postgres() as server:
        yield server


async def test_caught_up_is_delivered_across_a_database_restart(
    own_postgres: PrivatePostgres,
) -> None:
    env = {**os.environ, "DATABASE_URL": own_postgres.url, "RUN_PROJECTOR": "false", "AUTH": "none"}
    command = [sys.executable, "-m", "graph.runtime.cli", "serve", "--port", "{port}"]
    engine = create_engine(own_postgres.url)
    try:
        async with serve_process(command, env) as api_url, graphql_ws(api_url + "/graphql") as ws:
            await ensure_checkpoints(engine, PROJECTION_NAMES)
            probes = [
                await ws.subscribe(
                    "subscription($p: Position!) { caughtUp(position: $p) { position } }",
                    {"p": 1},
                )
                for _ in range(3)
            ]
            updates = await ws.subscribe(
                'subscription { projectionUpdated(projections: ["order_views"]) { position } }'
            )
            # Handled after the others were: once it answers, they are waiting.
            sentinel = await ws.subscribe("subscription { caughtUp(position: 0) { position } }")
            assert [e async for e in sentinel] == [{"caughtUp": {"position": 0}}]
            await _restart(own_postgres, engine)

            # Appended and projected by another process that tells nobody: whatever the
            # replica hears or misses, its waiters must find out.
            await _append_and_project(engine, InProcessNotifier())
            projected_at = asyncio.get_running_loop().time()
            # Then one that does tell, most likely while the replica is still reconnecting:
            # the subscription hears the NOTIFY, or re-reads once it is listening again.
            async with PostgresNotifier(own_postgres.url) as notifying:
                await _append_and_project(engine, notifying)

            async with asyncio.timeout(TIMEOUT):
                for probe in probes:
                    assert [e async for e in probe] == [{"caughtUp": {"position": 1}}]
                delivered = asyncio.get_running_loop().time() - projected_at
                while (await anext(updates))["projectionUpdated"]["position"] < 2:
                    pass
    finally:
        await engine.dispose()
    print(f"\ncaughtUp after a restart, silent projection to delivery: {delivered * 1000:.0f} ms")


async def _restart(server: PrivatePostgres, engine: AsyncEngine) -> None:
    await server.stop("fast")
    await server.start()
    await engine.dispose()  # the pool's connections died with the server


async def _append_and_project(engine: AsyncEngine, notifier: Notifier) -> None:
    await build_bus(EventStore(engine)).dispatch(place_order())
    projector = Projector(engine, all_projections(), notifier)
    for name in PROJECTION_NAMES:
        await projector.catch_up(name)
