"""kill -9 in the middle of a write load: nothing acknowledged is lost, nothing is projected
twice or skipped, on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.repository import order_id_of
from domain.eventstore.store import EventStore
from readmodels.tables import customer_summaries, order_views
from tests.support.graphql import PLACE, place_input
from tests.support.serving import free_port

STARTUP_SECONDS = 20


@contextlib.asynccontextmanager
async def server_process(
    database_url: str,
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "warning", "AUTH": "none"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.runtime.cli",
        "serve",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=1) as client, asyncio.timeout(STARTUP_SECONDS):
            while True:
                assert process.returncode is None, "server exited during start-up"
                with contextlib.suppress(httpx.TransportError):
                    await client.get(url + "/graphql", headers={"accept": "text/html"})
                    break
                await asyncio.sleep(0.1)  # start-up has no event to wait on
        yield process, url
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def place_until_killed(
    url: str, acknowledged: list[dict[str, Any]], enough: asyncio.Event
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        with contextlib.suppress(httpx.TransportError):
            for n in range(10_000):
                variables = {"input": place_input(customerId=f"c-{n % 7}")}
                response = await client.post(
                    "/graphql", json={"query": PLACE, "variables": variables}
                )
                acknowledged.append(response.json()["data"]["placeOrder"])
                if len(acknowledged) >= 150:
                    enough.set()


async def test_acknowledged_orders_survive_kill_9(engine: AsyncEngine, database_url: str) -> None:
    acknowledged: list[dict[str, Any]] = []
    async with server_process(database_url) as (process, url):
        enough = asyncio.Event()
        clients = [
            asyncio.create_task(place_until_killed(url, acknowledged, enough)) for _ in range(8)
        ]
        await asyncio.wait_for(enough.wait(), 60)
        process.send_signal(signal.SIGKILL)  # mid-load: appends and projection batches in flight
        await process.wait()
        await asyncio.gather(*clients)

    assert all(a["__typename"] == "CommandAccepted" for a in acknowledged)
    store = EventStore(engine)
    stored = {order_id_of(e.stream_id) for e in await store.read_all(limit=100_000)}
    assert {a["orderId"] for a in acknowledged} <= stored  # nothing acknowledged was lost

    async with server_process(database_url) as (_, url):
        head = await store.head_position()
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.post(
                "/graphql",
                json={
                    "query": "query($p: Position) { projections(atLeast: $p) { name position } }",
                    "variables": {"p": head},
                },
            )
        body = response.json()
        assert "stale" not in body.get("extensions", {}), body
        assert all(p["position"] >= head for p in body["data"]["projections"])

    async with engine.connect() as conn:
        views = await conn.scalar(sa.select(sa.func.count()).select_from(order_views))
        placed = await conn.scalar(sa.select(sa.func.sum(customer_summaries.c.orders_placed)))
    assert views == len(stored)  # every order projected once: no skips
    assert placed == len(stored)  # and counted once: no duplicates
