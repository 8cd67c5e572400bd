"""When the projector process that leads dies (kill -9), a standby takes over at once: it was
blocked on the leader's advisory lock, not waiting for its next poll."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import build_bus
from domain.eventstore.store import EventStore
from readmodels.leadership import PROJECTOR_LOCK
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.messages import Appended
from readmodels.notifications.postgres import PostgresNotifier
from readmodels.waiting import CheckpointWaiter
from tests.support.factories import place_order

POLL_SECONDS = 60  # the standby's fallback; take-over must not wait for it
TAKEOVER_BOUND = 5.0  # generous on a loaded machine; measured figures are far below


@contextlib.asynccontextmanager
async def projector_process(url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "DATABASE_URL": url, "POLL_INTERVAL": str(POLL_SECONDS)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.runtime.cli",
        "project",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def lock_holders(url: str) -> tuple[int | None, int]:
    """The OS pid of the projector holding the lead (from its application_name), and how
    many wait for it."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT l.granted, a.application_name FROM pg_locks l"
            " JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND (l.classid::bigint << 32 | l.objid::bigint) = $1",
            PROJECTOR_LOCK,
        )
    finally:
        await conn.close()
    holder = [int(r["application_name"].rsplit("-", 1)[1]) for r in rows if r["granted"]]
    return (holder[0] if holder else None), sum(not r["granted"] for r in rows)


async def until_one_leads_and_one_waits(url: str) -> int:
    async with asyncio.timeout(30):
        while True:
            leader, waiting = await lock_holders(url)
            if leader is not None and waiting == 1:
                return leader
            await asyncio.sleep(0.05)  # start-up has no event to wait on


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_standby_projector_takes_over_at_once_when_the_leader_is_killed(
    engine: AsyncEngine, postgres_url: str
) -> None:
    store = EventStore(engine)
    bus = build_bus(store)
    async with (
        PostgresNotifier(postgres_url) as notifier,
        projector_process(postgres_url) as first,
        projector_process(postgres_url) as second,
    ):
        store.on_append(lambda head: notifier.announce([Appended(head)]))  # as an API replica does
        waiter = CheckpointWaiter(engine, notifier, PROJECTION_NAMES)
        processes = {first.pid: first, second.pid: second}
        leader = await until_one_leads_and_one_waits(postgres_url)
        placed = await bus.dispatch(place_order())
        assert await waiter.wait_for(placed.position, within=TAKEOVER_BOUND)

        loop = asyncio.get_running_loop()
        processes[leader].send_signal(signal.SIGKILL)
        killed_at = loop.time()
        placed = await bus.dispatch(place_order())
        assert await waiter.wait_for(placed.position, within=TAKEOVER_BOUND)
        takeover = loop.time() - killed_at

        survivor, waiting = await lock_holders(postgres_url)
        assert survivor is not None
        assert survivor != leader
        assert waiting == 0
    print(f"\nprojector take-over after kill -9: {takeover * 1000:.0f} ms")
    assert takeover < TAKEOVER_BOUND
