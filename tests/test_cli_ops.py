"""The command line as an operator's script sees it: ``subscribe`` fails loudly, and an
interrupted ``rebuild`` says so and is finished by the projector."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import CommandBus
from graph.startup import INTERRUPTED, SUBSCRIPTION_FAILED
from readmodels.projector import Projector
from readmodels.rebuild import INTERRUPTED_NOTE
from readmodels.registry import PROJECTION_NAMES
from readmodels.tables import checkpoints, order_views
from tests.factories import place_order
from tests.ops import running
from tests.serving import free_port


async def subscribe(url: str, query: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.cli",
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


async def _states(engine: AsyncEngine) -> dict[str, tuple[str, int, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(
                checkpoints.c.name, checkpoints.c.state, checkpoints.c.position, checkpoints.c.error
            )
        )
        return {row.name: (row.state, row.position, row.error) for row in rows}


async def test_an_interrupted_rebuild_says_so_and_the_projector_finishes_it(
    engine: AsyncEngine, database_url: str, bus: CommandBus, projector: Projector
) -> None:
    orders = 300
    for _ in range(orders):
        await bus.dispatch(place_order())
    for name in PROJECTION_NAMES:
        await projector.catch_up(name)

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.cli",
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
        while b" events " not in seen:
            chunk = await process.stderr.read(200)
            assert chunk, "rebuild ended before it could be interrupted"
            seen += chunk
    process.send_signal(signal.SIGINT)
    _, rest = await asyncio.wait_for(process.communicate(), 60)
    err = (seen + rest).decode()
    assert process.returncode == INTERRUPTED, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("ordergraph: rebuild interrupted (customer_summaries at ")
    assert "Traceback" not in err

    states = await _states(engine)
    assert {state for state, _, _ in states.values()} == {"rebuilding"}
    assert {error for _, _, error in states.values()} == {INTERRUPTED_NOTE}
    position = states["order_views"][1]
    assert 0 < position < orders
    async with engine.connect() as conn:  # the tables hold what the checkpoint says
        assert await conn.scalar(sa.select(sa.func.count()).select_from(order_views)) == position

    # The live projector carries on from there; the state turns live once caught up.
    for name in PROJECTION_NAMES:
        await projector.catch_up(name)
    states = await _states(engine)
    assert states == {name: ("live", orders, None) for name in PROJECTION_NAMES}
    async with engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(order_views)) == orders


async def test_a_rebuild_stopped_right_at_the_head_turns_live_on_the_next_pass(
    engine: AsyncEngine, bus: CommandBus, projector: Projector
) -> None:
    for _ in range(3):
        await bus.dispatch(place_order())
    for name in PROJECTION_NAMES:
        await projector.catch_up(name)
    # as a rebuild leaves them when it is stopped after its last full batch
    async with engine.begin() as conn:
        await conn.execute(checkpoints.update().values(state="rebuilding", error=INTERRUPTED_NOTE))
    assert await projector.advance_together(list(projector.projections.values()), 50) == 0
    states = await _states(engine)
    assert states == {name: ("live", 3, None) for name in PROJECTION_NAMES}
