"""Queries through PostgreSQL standbys (READ_DATABASE_URLS), end to end over HTTP/WebSocket.

One primary with two asynchronous hot standbys of the module's own serves every test here.
The primary runs the projector with ``synchronous_commit = off``: waits read the standby's
own checkpoints, never an LSN, so read-your-writes holds even with asynchronous local commits.
Where reads went is proved from the standbys' own statistics, not from the app's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from domain.eventstore.engines import create_engine
from graph.runtime.app import create_app
from graph.runtime.settings import Settings
from graph.runtime.standby_checks import warn_about_standby_settings
from readmodels.read_targets import ReadTargets
from readmodels.standby_watcher import StandbyWatcher
from tests.support.graphql import PLACE, place_input
from tests.support.replica_pair import ReplicaSet, Standby, fetchval, replica_set
from tests.support.serving import graphql_ws, serve_app

pytestmark = pytest.mark.asyncio(loop_scope="module")

ORDER = "query($id: ID!, $p: Position) { order(id: $id, atLeast: $p) { id version } }"
ORDERS = "query { orders(first: 100) { totalCount edges { node { id } } } }"
CAUGHT_UP = "subscription($p: Position!) { caughtUp(position: $p) { position } }"
# Scans of order_views on a server, from its own statistics.
SCANS = (
    "SELECT COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0) FROM pg_stat_user_tables"
    " WHERE relname = 'order_views'"
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replicas() -> AsyncIterator[ReplicaSet]:
    async with replica_set(2) as found:
        await found.primary_settings(synchronous_commit="off")
        yield found


@contextlib.asynccontextmanager
async def serving(
    replicas: ReplicaSet, **overrides: Any
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    chosen: dict[str, Any] = {
        "database_url": replicas.primary.url,
        "read_database_urls": tuple(s.url for s in replicas.standbys),
        "read_check_interval": 0.2,
        "db_timeout": 5.0,
        "db_connect_timeout": 2.0,
        "request_log": False,
        "auth": "none",  # identity is tests/e2e/test_access.py's subject
    }
    settings = Settings(**{**chosen, **overrides})
    app = create_app(settings)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield app, http


def reads_of(app: Starlette) -> ReadTargets:
    reads: ReadTargets = app.state.services.reads
    return reads


async def gql(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    body: dict[str, Any] = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body
    return body


async def place(http: httpx.AsyncClient) -> dict[str, Any]:
    order_id = f"order-{uuid.uuid4().hex[:12]}"
    body = await gql(http, PLACE, input=place_input(orderId=order_id))
    accepted: dict[str, Any] = body["data"]["placeOrder"]
    assert accepted["__typename"] == "CommandAccepted", accepted
    return accepted


async def scans(server: Standby | Any) -> int:
    return int(await fetchval(server, SCANS) or 0)


async def settled_scans(server: Any, at_least: int = 0, within: float = 30.0) -> int:
    """A server's scan count once its statistics show at least ``at_least`` (they are
    flushed by each backend at most once a second, and at its exit)."""
    deadline = time.monotonic() + within
    found = await scans(server)
    while found < at_least and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # statistics have no notification: poll with a deadline
        found = await scans(server)
    return found


async def test_queries_are_served_by_the_standbys(replicas: ReplicaSet) -> None:
    async with serving(replicas) as (_app, http):
        placed = [await place(http) for _ in range(5)]
        for order in placed:  # projected, and on both standbys, before we count
            await gql(http, ORDER, id=order["orderId"], p=order["position"])
            await gql(http, ORDER, id=order["orderId"], p=order["position"])
    # The app is gone: its backends exited and flushed their statistics.
    before = [await scans(s) for s in replicas.standbys]
    primary_before = await scans(replicas.primary)
    reads = 40
    async with serving(replicas, run_projector=False) as (_app, http):
        for n in range(reads):
            order = placed[n % len(placed)]
            found = await gql(http, ORDER, id=order["orderId"], p=order["position"])
            assert found["data"]["order"]["id"] == order["orderId"]
    after = [await settled_scans(s, b + 1) for s, b in zip(replicas.standbys, before, strict=True)]
    served = [a - b for a, b in zip(after, before, strict=True)]
    primary_served = await scans(replicas.primary) - primary_before
    print(f"order_views scans: standbys {served}, primary {primary_served}")
    assert sum(served) >= reads
    assert all(n >= reads // 4 for n in served), "both standbys are used in turn"
    assert primary_served == 0


PROJECTIONS = """query($p: Position) { projections(atLeast: $p) {
    name position readTargets { target position lag lagSeconds inUse } } }"""


async def test_each_standbys_position_and_lag_are_visible(replicas: ReplicaSet) -> None:
    lagging = replicas.standbys[0]
    # 1.5 s: far above what the healthy standby lags by under these writes on a busy host,
    # far below the 3 s the lagging one is held back.
    async with serving(replicas, read_max_lag_seconds=1.5) as (app, http):
        order = await place(http)
        body = await gql(http, PROJECTIONS, p=order["position"])
        for projection in body["data"]["projections"]:
            targets = projection["readTargets"]
            assert [t["target"].rsplit("@", 1)[-1] for t in targets] == [
                f"127.0.0.1:{s.port}/ordergraph" for s in replicas.standbys
            ]
            assert all(t["inUse"] and t["position"] >= order["position"] for t in targets)
        ready = (await http.get("/readyz")).json()["checks"]["read_targets"]
        assert ready["ok"]
        assert len(ready["in_use"]) == 2
        metrics = (await http.get("/metrics")).text
        assert "ordergraph_read_target_in_use{" in metrics
        assert "ordergraph_read_target_lag_seconds{" in metrics
        # Far behind: replay held back 3 s while writes go on.
        await replicas.standby_setting(lagging, "recovery_min_apply_delay", "3s")
        try:
            target = reads_of(app).standbys[0]
            deadline = time.monotonic() + 10
            while target.in_use:
                await place(http)
                assert time.monotonic() < deadline, "a standby far behind stays in use"
                await asyncio.sleep(0.1)  # the health check has no event: poll with a deadline
            body = await gql(http, PROJECTIONS)
            status = body["data"]["projections"][0]["readTargets"][0]
            ready = (await http.get("/readyz")).json()["checks"]["read_targets"]
        finally:
            await replicas.standby_setting(lagging, "recovery_min_apply_delay", "0")
    print(f"a standby 3 s behind, as projections shows it: {status}")
    assert status["inUse"] is False
    assert status["lagSeconds"] > 1.5
    assert ready["in_use"] == [reads_of(app).standbys[1].name]


async def test_start_up_warns_once_per_missing_standby_setting(
    replicas: ReplicaSet, caplog: pytest.LogCaptureFixture
) -> None:
    standby = replicas.standbys[0]
    primary = create_engine(replicas.primary.url)
    engines = [(f"127.0.0.1:{s.port}", create_engine(s.url)) for s in replicas.standbys]
    try:
        assert await warn_about_standby_settings(primary, engines) == []
        await replicas.standby_setting(standby, "hot_standby_feedback", "off")
        await replicas.primary_settings()  # nothing to set; the table option below
        conn = await asyncpg.connect(replicas.primary.url)
        try:
            await conn.execute("ALTER TABLE daily_sales RESET (vacuum_truncate)")
            with caplog.at_level(logging.WARNING, logger="ordergraph.reads"):
                problems = await warn_about_standby_settings(primary, engines)
        finally:
            await conn.execute("ALTER TABLE daily_sales SET (vacuum_truncate = false)")
            await conn.close()
    finally:
        await replicas.standby_setting(standby, "hot_standby_feedback", "on")
        for engine in [primary, *(e for _, e in engines)]:
            await engine.dispose()
    assert len(problems) == 2
    assert "hot_standby_feedback = off" in problems[0]
    assert f"127.0.0.1:{standby.port}" in problems[0]
    assert "daily_sales" in problems[1]
    assert [r.getMessage() for r in caplog.records] == problems


async def test_every_at_least_read_sees_its_write_through_a_lagging_standby(
    replicas: ReplicaSet,
) -> None:
    for standby in replicas.standbys:
        await replicas.standby_setting(standby, "recovery_min_apply_delay", "30ms")
    try:
        async with serving(replicas) as (app, http):
            written: list[dict[str, Any]] = []
            placed: list[dict[str, Any]] = []  # as soon as the mutation answers
            misses: list[Any] = []
            stale_or_older = 0
            waits: list[float] = []

            async def writer() -> None:
                for _ in range(8):
                    order = await place(http)
                    placed.append(order)
                    started = time.perf_counter()
                    body = await gql(http, ORDER, id=order["orderId"], p=order["position"])
                    waits.append(time.perf_counter() - started)
                    seen = body["data"]["order"]
                    if seen is None or body.get("extensions", {}).get("stale"):
                        misses.append(body)
                    written.append(order)

            async def reader() -> None:
                nonlocal stale_or_older
                while len(written) < 16 * 8:
                    if not placed:
                        await asyncio.sleep(0.01)  # nothing written yet to read back
                        continue
                    order = placed[-1]  # just written: the standby may not have it yet
                    body = await gql(http, ORDER, id=order["orderId"])  # no atLeast
                    if body["data"]["order"] is None:
                        stale_or_older += 1  # older data: allowed, never an error

            await asyncio.gather(*(writer() for _ in range(16)), *(reader() for _ in range(16)))
            assert reads_of(app).retries == 0
        waits.sort()
        print(
            f"{len(written)} atLeast reads through standbys with 30 ms replay delay: "
            f"{len(misses)} misses; wait p50 {waits[len(waits) // 2] * 1000:.1f} ms, "
            f"p99 {waits[int(len(waits) * 0.99)] * 1000:.1f} ms; reads without atLeast "
            f"that saw older data: {stale_or_older}"
        )
        assert misses == []
        assert len(written) == 128
    finally:
        for standby in replicas.standbys:
            await replicas.standby_setting(standby, "recovery_min_apply_delay", "0")


async def test_caught_up_arrives_only_once_the_lagging_standby_has_the_position(
    replicas: ReplicaSet,
) -> None:
    lagging = replicas.standbys[0]
    await replicas.standby_setting(lagging, "recovery_min_apply_delay", "1s")
    try:
        async with (
            serving(replicas) as (_app, http),
            graphql_ws(str(http.base_url) + "/graphql") as ws,
        ):
            order = await place(http)
            position = order["position"]
            started = time.monotonic()
            subscription = await ws.subscribe(CAUGHT_UP, {"p": position})
            event = await anext(subscription)
            waited = time.monotonic() - started
            has = await fetchval(
                lagging,
                "SELECT min(position) FROM projection_checkpoints",
            )
        print(f"caughtUp through a standby replaying 1 s late arrived after {waited:.2f} s")
        assert event["caughtUp"]["position"] == position
        assert has >= position, "caughtUp came before the lagging standby had the position"
        assert waited >= 0.5
    finally:
        await replicas.standby_setting(lagging, "recovery_min_apply_delay", "0")


async def test_a_recovery_conflict_cancellation_is_retried_and_answered(
    replicas: ReplicaSet,
) -> None:
    for standby in replicas.standbys:
        # Cancel standby queries at once when replay needs their lock (default: after 30 s).
        await replicas.standby_setting(standby, "max_standby_streaming_delay", "0")
    conflicts_before = [int(await fetchval(s, CONFLICTS)) for s in replicas.standbys]
    try:
        async with serving(replicas) as (app, http):
            for _ in range(40):
                await place(http)
            stop = asyncio.Event()
            answered = 0

            async def reader() -> None:
                nonlocal answered
                while not stop.is_set():
                    body = await gql(http, ORDERS)
                    assert body["data"]["orders"]["totalCount"] >= 40
                    answered += 1

            async def locker() -> None:
                # Each exclusive lock, replayed on the standby, conflicts with its readers.
                conn = await asyncpg.connect(replicas.primary.url)
                try:
                    deadline = time.monotonic() + 30
                    while reads_of(app).retries < 3 and time.monotonic() < deadline:
                        async with conn.transaction():
                            await conn.execute("LOCK TABLE order_views IN ACCESS EXCLUSIVE MODE")
                        await asyncio.sleep(0.005)  # leave the readers a moment to read
                finally:
                    stop.set()
                    await conn.close()

            await asyncio.gather(locker(), *(reader() for _ in range(8)))
            retries = reads_of(app).retries
        conflicts = [
            int(await fetchval(s, CONFLICTS)) - b
            for s, b in zip(replicas.standbys, conflicts_before, strict=True)
        ]
        print(f"{answered} reads answered; standby lock conflicts {conflicts}; retried {retries}")
        assert sum(conflicts) >= 1, "no query was cancelled by a replay conflict"
        assert retries >= 1
    finally:
        for standby in replicas.standbys:
            await replicas.standby_setting(standby, "max_standby_streaming_delay", "30s")


CONFLICTS = (
    "SELECT confl_lock + confl_snapshot FROM pg_stat_database_conflicts"
    " WHERE datname = current_database()"
)


async def test_a_standby_stopped_under_load_is_left_out_and_used_again(
    replicas: ReplicaSet,
) -> None:
    stopped = replicas.standbys[1]
    async with serving(replicas) as (app, http):
        reads = reads_of(app)
        target = reads.standbys[1]
        placed = [await place(http) for _ in range(5)]
        stop = asyncio.Event()
        answered = 0

        async def reader() -> None:
            nonlocal answered
            n = 0
            while not stop.is_set():
                order = placed[n % len(placed)]
                n += 1
                body = await gql(http, ORDER, id=order["orderId"], p=order["position"])
                assert body["data"]["order"]["id"] == order["orderId"]
                assert "stale" not in body.get("extensions", {})
                answered += 1

        readers = [asyncio.create_task(reader()) for _ in range(8)]
        try:
            await asyncio.sleep(0.5)  # load running before the standby goes
            await stopped.stop("immediate")
            gone = time.monotonic()
            while target.in_use:
                assert time.monotonic() - gone < 5, "the stopped standby is still in use"
                await asyncio.sleep(0.02)  # in_use has no event: poll with a deadline
            left_out_after = time.monotonic() - gone
            answered_while_down = answered
            await asyncio.sleep(1.0)  # reads keep coming, from the other standby
            assert answered > answered_while_down
            await stopped.start()
            back = time.monotonic()
            while not target.in_use:
                assert time.monotonic() - back < 30, "the restarted standby is not used again"
                await asyncio.sleep(0.05)
            before = await scans(stopped)
            after = await settled_scans(stopped, before + 1)
        finally:
            stop.set()
            await asyncio.gather(*readers)
    print(
        f"stopped standby left out after {left_out_after:.2f} s; {answered} reads, no errors; "
        f"back in use {time.monotonic() - back:.1f} s after restart"
    )
    assert after > before, "the restarted standby serves reads again (its own statistics)"


async def test_a_standby_watcher_reads_only_while_someone_waits(replicas: ReplicaSet) -> None:
    async with serving(replicas) as (app, http):
        watcher = reads_of(app).standbys[0].waiter
        assert isinstance(watcher, StandbyWatcher)
        order = await place(http)
        await gql(http, ORDER, id=order["orderId"], p=order["position"])
        idle = watcher.reads
        await asyncio.sleep(1.0)  # nobody waits: nothing may be read meanwhile
        assert watcher.reads == idle
        # Waiting for a position nobody has announced: slow re-checks only, no busy loop.
        far = order["position"] + 1000
        assert await watcher.wait_for(far, ["order_views"], within=1.5) is False
        print(f"one waiter for an unannounced position, 1.5 s: {watcher.reads - idle} reads")
        assert watcher.reads - idle <= 4


PAY = "mutation($input: PayOrderInput!) { payOrder(input: $input) { __typename } }"
ORDER_CHANGED = "subscription($id: ID!) { orderChanged(id: $id) { status version } }"


async def test_order_changed_pushes_the_view_once_the_lagging_standby_has_it(
    replicas: ReplicaSet,
) -> None:
    lagging = replicas.standbys[0]
    async with serving(replicas, read_database_urls=(lagging.url,)) as (_app, http):
        order = await place(http)
        await gql(http, ORDER, id=order["orderId"], p=order["position"])
        await replicas.standby_setting(lagging, "recovery_min_apply_delay", "1s")
        try:
            async with graphql_ws(str(http.base_url) + "/graphql") as ws:
                changes = await ws.subscribe(ORDER_CHANGED, {"id": order["orderId"]})
                first = await anext(changes)
                assert first["orderChanged"] == {"status": "PLACED", "version": 1}
                started = time.monotonic()
                paid = await gql(http, PAY, input={"orderId": order["orderId"], "amount": "40.28"})
                assert paid["data"]["payOrder"]["__typename"] == "CommandAccepted"
                pushed = await anext(changes)
                waited = time.monotonic() - started
                on_lagging = await fetchval(
                    lagging,
                    "SELECT version FROM order_views WHERE order_id = $1",
                    order["orderId"],
                )
        finally:
            await replicas.standby_setting(lagging, "recovery_min_apply_delay", "0")
    print(f"orderChanged through a standby replaying 1 s late pushed after {waited:.2f} s")
    assert pushed["orderChanged"] == {"status": "PAID", "version": 2}
    # Pushed as the standby that serves the reads has it, once it has it.
    assert on_lagging == 2
    assert waited >= 0.5
