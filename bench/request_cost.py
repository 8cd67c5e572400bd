"""What one GraphQL request costs the server's process, without HTTP or a load generator: the
real app (``create_app``, with its lifespan) called as an ASGI callable by 16 concurrent tasks,
timed in process CPU per request. The lowest of several rounds is printed: on a shared
machine noise only ever adds. For A/B comparisons of two trees on one machine, alternately.

    DATABASE_URL=... python -m bench.request_cost [--workload order|place] [--requests 1600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Message

from bench.workloads import order_body, place_body
from graph.runtime.app import create_app
from graph.runtime.gc_tuning import tune_gc
from graph.runtime.settings import Settings

CONCURRENCY = 16


async def request(app: ASGIApp, body: bytes) -> bytes:
    """POST /graphql with ``body``; the response body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent = False
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return b"".join(chunks)


async def cpu_per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    """Process CPU seconds per call, with CONCURRENCY calls in flight."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    each = max(1, calls // CONCURRENCY)
    started = time.process_time()
    await asyncio.gather(*(worker(each) for _ in range(CONCURRENCY)))
    return (time.process_time() - started) / (each * CONCURRENCY)


async def main(
    settings: Settings, workload: str, requests: int, rounds: int, *, tune: bool = True
) -> dict[str, object]:
    """``tune``: the collector's settings of ``ordergraph serve`` (graph/runtime/gc_tuning.py)
    once warm; they stay for the rest of the process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        placed = json.loads(await request(app, json.dumps(place_body("bench")).encode()))
        order_id = placed["data"]["placeOrder"]["orderId"]
        order = json.dumps(order_body(order_id)).encode()

        async def call() -> bytes:
            if workload == "order":
                return await request(app, order)
            return await request(app, json.dumps(place_body("bench")).encode())

        answer = json.loads(await call())
        if answer.get("errors"):
            raise SystemExit(f"the {workload} request failed: {answer['errors']}")
        await cpu_per_call(call, requests // 4)  # warm: caches, pool, plans
        if tune:
            tune_gc()
        best = min([await cpu_per_call(call, requests) for _ in range(rounds)])
    return {"workload": workload, "requests": requests, "rounds": rounds, "cpu_us": best * 1e6}


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workload", choices=("order", "place"), default="order")
    parser.add_argument("--requests", type=int, default=1600)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    result = main(Settings.from_env(), args.workload, args.requests, args.rounds)
    print(json.dumps(asyncio.run(result)))


if __name__ == "__main__":
    run()
