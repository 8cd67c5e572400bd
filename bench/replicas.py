"""Read-your-writes through a streaming standby against the primary alone, in one run.

    .venv/bin/python -m bench.replicas [--orders 300] [--json]

(also run by ``make bench`` on PostgreSQL; ``--replica-orders 0`` skips it there).

Starts its own primary and asynchronous standby (PostgreSQL 15 binaries, as the ``postgres``
OS user, on free ports; removed at the end) and an ``ordergraph serve`` process. Measures,
one client at a time so the figures are latency, not queueing:
- mutation response -> ``order(atLeast)`` answered with the write, and -> ``caughtUp``;
- placeOrder latency with ``synchronous_commit = remote_apply`` on that standby vs async;
- the server process's CPU over 5 s with 200 idle ``caughtUp`` waiters vs none.
On one machine a standby adds no capacity (it shares the cores); this shows the overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.graphql import PLACE, place_input
from tests.support.replica_pair import ReplicaSet, replica_set
from tests.support.serving import graphql_ws, serve_process

ORDER = "query($id: ID!, $p: Position) { order(id: $id, atLeast: $p) { id } }"
CAUGHT_UP = "subscription($p: Position!) { caughtUp(position: $p) { position } }"


@contextlib.asynccontextmanager
async def serving(replicas: ReplicaSet, standby: bool) -> AsyncIterator[Client]:
    env = {
        **os.environ,
        "DATABASE_URL": replicas.primary.url,
        "READ_DATABASE_URLS": replicas.standbys[0].url if standby else "",
        "REQUEST_LOG": "false",
        "LOG_LEVEL": "warning",
        "AUTH": "none",
    }
    # A server process of its own (uvloop, httptools), as in production: under uvicorn in
    # this event loop every HTTP answer waited on a delayed ACK, hiding what is measured.
    command = [sys.executable, "-m", "graph.runtime.cli", "serve", "--port", "{port}"]
    async with serve_process(command, env) as url, aiohttp.ClientSession() as session:
        yield Client(url, session)


class Client:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = url
        self.session = session
        port = url.rsplit(":", 1)[1]
        self.pid = next(
            int(path.parent.name)
            for path in Path("/proc").glob("[0-9]*/cmdline")
            if _cmdline(path)[-2:] == ["--port", port]
        )

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def post(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        body = {"query": query, "variables": variables}
        async with self.session.post(self.base_url + "/graphql", json=body) as response:
            found: dict[str, Any] = await response.json()
            return found


async def place(http: Client) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    body = await http.post(PLACE, {"input": place_input(orderId=uuid.uuid4().hex)})
    accepted: dict[str, Any] = body["data"]["placeOrder"]
    return accepted, time.perf_counter() - started


async def read_your_writes(http: Client, orders: int) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {"atLeast": [], "caughtUp": [], "placeOrder": []}
    async with graphql_ws(str(http.base_url) + "/graphql") as ws:
        for n in range(orders):
            order, took = await place(http)
            found["placeOrder"].append(took)
            started = time.perf_counter()
            if n % 2:
                sub = await ws.subscribe(CAUGHT_UP, {"p": order["position"]})
                await anext(sub)
                found["caughtUp"].append(time.perf_counter() - started)
            else:
                body = await http.post(ORDER, {"id": order["orderId"], "p": order["position"]})
                assert body["data"]["order"] is not None, body
                assert "extensions" not in body, body
                found["atLeast"].append(time.perf_counter() - started)
    return found


async def idle_cpu(http: Client, waiters: int, seconds: float = 5.0) -> float:
    async with graphql_ws(str(http.base_url) + "/graphql") as ws:
        for _ in range(waiters):
            await ws.subscribe(CAUGHT_UP, {"p": 10**12})
        await asyncio.sleep(0.5)
        started = http.cpu_seconds()
        await asyncio.sleep(seconds)  # measuring what idle costs: nothing to wait for
        return (http.cpu_seconds() - started) / seconds


def _cmdline(path: Path) -> list[str]:
    try:
        return path.read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(int(len(ordered) * 0.99), len(ordered) - 1)] * 1000,
    }


async def measure(orders: int) -> dict[str, Any]:
    """Every figure of the module docstring, as JSON-ready numbers."""
    result: dict[str, Any] = {"orders": orders}
    async with replica_set(1) as replicas:
        for standby in (False, True):
            name = "standby" if standby else "primary"
            async with serving(replicas, standby) as http:
                await read_your_writes(http, 20)  # warm up
                found = await read_your_writes(http, orders)
                result[name] = {kind: summary(values) for kind, values in found.items()}
                result[name]["idle_cpu"] = await idle_cpu(http, 0)
                result[name]["idle_cpu_200_waiters"] = await idle_cpu(http, 200)
        await replicas.primary_settings(
            synchronous_standby_names="standby1", synchronous_commit="remote_apply"
        )
        await replicas.wait_streaming(sync=True)
        async with serving(replicas, True) as http:
            result["remote_apply"] = summary([(await place(http))[1] for _ in range(orders)])
    return result


def print_table(result: dict[str, Any]) -> None:
    for name in ("primary", "standby"):
        for kind in ("placeOrder", "atLeast", "caughtUp"):
            figures = result[name][kind]
            print(
                f"{name:8} {kind:10} p50 {figures['p50_ms']:.2f} ms  p99 {figures['p99_ms']:.2f} ms"
            )
        print(
            f"{name:8} CPU idle: {result[name]['idle_cpu']:.1%} with no waiters,"
            f" {result[name]['idle_cpu_200_waiters']:.1%} with 200"
        )
    apply = result["remote_apply"]
    print(f"remote_apply placeOrder p50 {apply['p50_ms']:.2f} ms  p99 {apply['p99_ms']:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    measured = asyncio.run(measure(args.orders))
    if args.json:
        print(json.dumps(measured))
    else:
        print_table(measured)
