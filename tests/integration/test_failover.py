"""A primary failure loses nothing acknowledged: a synchronous standby, promoted when the
primary is killed, with API processes that find it through a multi-host DATABASE_URL
(``target_session_attrs=read-write``) and never restart.

The module's own primary and synchronous standby (``synchronous_commit = on``); the tests
run in order: the standby stopped (writes get the retryable answer in a bounded time), then
the primary killed under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from tests.support.graphql import PLACE, place_input
from tests.support.replica_pair import ReplicaSet, replica_set
from tests.support.serving import serve_process

pytestmark = pytest.mark.asyncio(loop_scope="module")

DB_TIMEOUT = 2.0
BOUND = DB_TIMEOUT + 6.0  # the longest a write may take to get its answer with the standby down


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replicas() -> AsyncIterator[ReplicaSet]:
    async with replica_set(1, synchronous="on") as found:
        yield found


def multi_host_url(replicas: ReplicaSet) -> str:
    hosts = "&".join(
        f"host=127.0.0.1:{server.port}" for server in (replicas.primary, *replicas.standbys)
    )
    return f"postgresql://postgres@/ordergraph?{hosts}&target_session_attrs=read-write"


@contextlib.asynccontextmanager
async def api_processes(replicas: ReplicaSet, count: int) -> AsyncIterator[list[str]]:
    env = {
        **os.environ,
        "DATABASE_URL": multi_host_url(replicas),
        "DB_TIMEOUT": str(DB_TIMEOUT),
        "DB_CONNECT_TIMEOUT": "2",
        "LOG_LEVEL": "warning",
        "REQUEST_LOG": "false",
        "AUTH": "none",
    }
    command = [sys.executable, "-m", "graph.runtime.cli", "serve", "--port", "{port}"]
    async with contextlib.AsyncExitStack() as stack:
        urls = [await stack.enter_async_context(serve_process(command, env)) for _ in range(count)]
        yield urls


async def send(http: httpx.AsyncClient, url: str, command: dict[str, Any]) -> dict[str, Any] | None:
    """The CommandAccepted answer, or None for a retryable one (503, or the connection cut)."""
    try:
        response = await http.post(url + "/graphql", json={"query": PLACE, "variables": command})
    except httpx.TransportError:
        return None
    body = response.json()
    if response.status_code == 503:
        assert body["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE", body
        assert response.headers["retry-after"]
        return None
    assert response.status_code == 200, body
    assert "errors" not in body, body
    accepted: dict[str, Any] = body["data"]["placeOrder"]
    assert accepted["__typename"] == "CommandAccepted", accepted
    return accepted


def new_command() -> dict[str, Any]:
    tag = uuid.uuid4().hex[:12]
    return {"input": place_input(orderId=f"order-{tag}", commandId=f"command-{tag}")}


async def test_with_the_synchronous_standby_down_writes_answer_retryably_in_bounded_time(
    replicas: ReplicaSet,
) -> None:
    standby = replicas.standbys[0]
    async with api_processes(replicas, 1) as [url], httpx.AsyncClient(timeout=60) as http:
        assert await send(http, url, new_command()) is not None
        await standby.stop("fast")
        try:
            command = new_command()
            started = time.monotonic()
            answer = await send(http, url, command)
            waited = time.monotonic() - started
            print(f"synchronous standby down: retryable answer after {waited:.2f} s")
            assert answer is None, "acknowledged although no synchronous standby has it"
            assert waited < BOUND
        finally:
            await standby.start()
        await replicas.wait_streaming(sync=True)
        # The cut-off commit may have committed locally; re-sent, it has exactly one result.
        first = await send(http, url, command)
        again = await send(http, url, command)
        assert first is not None
        assert first == again
    conn = await asyncpg.connect(replicas.primary.url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM events e JOIN commands c ON c.stream_id = e.stream_id"
            " WHERE c.command_id = $1",
            command["input"]["commandId"],
        )
    finally:
        await conn.close()
    assert stored == 1


async def test_killing_the_primary_loses_nothing_acknowledged(replicas: ReplicaSet) -> None:
    primary, standby = replicas.primary, replicas.standbys[0]
    acknowledged: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    resent: set[str] = set()
    after_promotion: dict[str, int] = {}
    promoted = asyncio.Event()
    enough = asyncio.Event()

    async with api_processes(replicas, 2) as urls, httpx.AsyncClient(timeout=60) as http:
        after_promotion.update(dict.fromkeys(urls, 0))

        async def writer(n: int) -> None:
            done_after = 0
            while done_after < 5:
                url = urls[n % len(urls)]
                n += 1
                command = new_command()
                deadline = time.monotonic() + 90
                while (answer := await send(http, url, command)) is None:
                    assert time.monotonic() < deadline, "no new primary found"
                    resent.add(command["input"]["commandId"])
                    await asyncio.sleep(0.2)  # as Retry-After asks, shorter
                acknowledged[command["input"]["commandId"]] = (command, answer)
                if len(acknowledged) >= 60:
                    enough.set()
                if promoted.is_set():
                    done_after += 1
                    after_promotion[url] += 1

        async def fail_over() -> None:
            await enough.wait()  # acknowledgements accumulated under load
            primary.kill_9()
            await standby.promote()
            promoted.set()

        await asyncio.gather(fail_over(), *(writer(n) for n in range(8)))

        # Every acknowledged command is in the promoted database, once.
        conn = await asyncpg.connect(standby.url)
        try:
            rows = await conn.fetch(
                "SELECT c.command_id, c.position, count(e.position) AS events FROM commands c"
                " JOIN events e ON e.stream_id = c.stream_id GROUP BY c.command_id, c.position"
            )
        finally:
            await conn.close()
        stored = {row["command_id"]: row for row in rows}
        present = [cid for cid in acknowledged if cid in stored]
        # Re-sent command ids give their first answers, from either process.
        same = 0
        for command, answer in acknowledged.values():
            if await send(http, urls[same % 2], command) == answer:
                same += 1
    print(
        f"fail-over: {len(acknowledged)} acknowledged, {len(present)} present after promotion, "
        f"{len(resent)} sent again after a retryable answer, {same} re-sent ids gave their "
        f"first answers; writes after promotion per API process {list(after_promotion.values())}"
    )
    assert len(present) == len(acknowledged)
    assert all(stored[cid]["position"] == a["position"] for cid, (_, a) in acknowledged.items())
    assert all(stored[cid]["events"] == 1 for cid in acknowledged)
    assert same == len(acknowledged)
    assert all(count >= 1 for count in after_promotion.values())
