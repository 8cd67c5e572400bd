"""The command line as an operator's script sees it: ``subscribe`` fails loudly, and an
interrupted ``rebuild`` says so, leaves the active version alone, and is finished by the
projector."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import CommandBus
from graph.runtime.startup import INTERRUPTED, SUBSCRIPTION_FAILED
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.projector import Projector
from readmodels.rebuild import INTERRUPTED_NOTE
from readmodels.tables import checkpoints, order_views, projection_versions
from readmodels.versions import table_at
from tests.support.factories import place_order
from tests.support.ops import running
from tests.support.serving import free_port
from tests.support.waits import until


async def subscribe(url: str, query: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.runtime.cli",
        "subscribe",
        query,
        "--url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_subscribe_exits_0_on_completion_and_5_on_errors(
    engine: AsyncEngine, database_url: str
) -> None:
    async with running(engine, database_url) as server:
        ws = server.url.replace("http", "ws") + "/graphql"
        code, out, err = await subscribe(ws, "subscription { caughtUp(position: 0) { position } }")
        assert (code, err) == (0, "")
        assert '"caughtUp": {"position": 0}' in out

        code, out, err = await subscribe(ws, "subscription { nosuch }")
        assert code == SUBSCRIPTION_FAILED
        assert "the server refused the subscription" in err
        assert "nosuch" in err

        code, out, err = await subscribe(
            ws, 'subscription { caughtUp(position: 0, projections: ["nope"]) { position } }'
        )
        assert code == SUBSCRIPTION_FAILED
        assert "unknown projections" in out + err

    code, _, err = await subscribe(f"ws://127.0.0.1:{free_port()}/graphql", "subscription { x }")
    assert code == SUBSCRIPTION_FAILED
    assert err.startswith("ordergraph: subscription to ws://127.0.0.1:")
    assert "Traceback" not in err


async def _states(engine: AsyncEngine) -> dict[str, tuple[str, int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                checkpoints.c.name,
                checkpoints.c.state,
                checkpoints.c.position,
                checkpoints.c.version,
            )
        )
        return {row.name: (row.state, row.position, row.version) for row in rows}


async def _builds(engine: AsyncEngine) -> dict[str, tuple[int, int, str | None, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                projection_versions.c.name,
                projection_versions.c.version,
                projection_versions.c.position,
                projection_versions.c.builder,
                projection_versions.c.note,
            ).where(projection_versions.c.status == "building")
        )
        return {row.name: (row.version, row.position, row.builder, row.note) for row in rows}


async def _no_builds(engine: AsyncEngine) -> bool:
    return not await _builds(engine)


async def test_an_interrupted_rebuild_says_so_leaves_the_active_alone_and_the_projector_finishes_it(
    engine: AsyncEngine,
    database_url: str,
    bus: CommandBus,
    projector: Projector,
    notifier: InProcessNotifier,
) -> None:
    orders = 300
    for _ in range(orders):
        await bus.dispatch(place_order())
    for name in PROJECTION_NAMES:
        await projector.catch_up(name)

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.runtime.cli",
        "rebuild",
        "--all",
        "--batch-size",
        "1",
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    async with asyncio.timeout(60):  # interrupt once the progress bar shows a replay under way
        seen = b""
        while b" events/s" not in seen:
            chunk = await process.stderr.read(200)
            assert chunk, "rebuild ended before it could be interrupted"
            seen += chunk
    process.send_signal(signal.SIGINT)
    _, rest = await asyncio.wait_for(process.communicate(), 60)
    err = (seen + rest).decode()
    assert process.returncode == INTERRUPTED, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ordergraph: rebuild interrupted (customer_summaries at ")
    assert "the active versions are untouched" in last
    assert "Traceback" not in err

    assert await _states(engine) == {name: ("live", orders, 1) for name in PROJECTION_NAMES}
    builds = await _builds(engine)
    assert {(v, builder, note) for v, _, builder, note in builds.values()} == {
        (2, None, INTERRUPTED_NOTE)  # its lease given up: the next builder goes on at once
    }
    position = builds["order_views"][1]
    assert 0 < position < orders
    async with engine.connect() as conn:  # the new tables hold what their checkpoint says
        count = sa.select(sa.func.count()).select_from(table_at(order_views, 2))
        assert await conn.scalar(count) == position

    # The live projector carries on from there and switches once caught up.
    await projector.start()
    try:
        await until(lambda: _no_builds(engine), notifier)
    finally:
        await projector.stop()
    assert await _states(engine) == {name: ("live", orders, 2) for name in PROJECTION_NAMES}
    async with engine.connect() as conn:
        count = sa.select(sa.func.count()).select_from(table_at(order_views, 2))
        assert await conn.scalar(count) == orders
