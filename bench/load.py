"""The load generator: N virtual clients in closed loops over real HTTP, each on its own
keep-alive connection (aiohttp), plus graphql-transport-ws sockets for read-your-writes.

Every figure is measured in this process, from just before a request is sent to just after
its response is parsed, with ``time.perf_counter``. Each loop runs until a shared deadline and
every wait has a timeout, so a dead server costs at most the workload's duration plus a grace.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.workloads import (
    CAUGHT_UP,
    JSON,
    CommandRefused,
    OrderBook,
    accepted,
    order_body,
    place_body,
)

REQUEST_TIMEOUT = 30.0
GRACE = 60.0  # beyond a workload's duration, for requests in flight at the deadline
_HEADERS = {"content-type": "application/json", "accept": "application/json"}
# What a failed request can raise; anything else is a bug in the benchmark and propagates.
_FAILURES = (aiohttp.ClientError, CommandRefused, TimeoutError, ValueError, KeyError)


@dataclass
class Samples:
    latencies: dict[str, list[float]] = field(default_factory=dict)  # operation -> seconds
    errors: int = 0
    first_error: str | None = None
    position: int = 0  # highest position acknowledged: what read models must catch up to

    def add(self, operation: str, seconds: float, position: int = 0) -> None:
        self.latencies.setdefault(operation, []).append(seconds)
        self.position = max(self.position, position)

    def fail(self, error: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{type(error).__name__}: {error}"[:300]


@dataclass(frozen=True, slots=True)
class Summary:
    ops: int
    errors: int
    seconds: float
    throughput: float  # successful operations per second
    p50_ms: float
    p99_ms: float
    by_operation: dict[str, int]
    first_error: str | None

    @classmethod
    def of(cls, samples: Samples, seconds: float) -> Summary:
        every = sorted(itertools.chain.from_iterable(samples.latencies.values()))
        return cls(
            ops=len(every),
            errors=samples.errors,
            seconds=round(seconds, 3),
            throughput=len(every) / seconds if seconds > 0 else 0.0,
            p50_ms=percentile(every, 0.50) * 1000,
            p99_ms=percentile(every, 0.99) * 1000,
            by_operation={op: len(values) for op, values in sorted(samples.latencies.items())},
            first_error=samples.first_error,
        )


def percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0.0 for none)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Client:
    """One virtual client: a session whose pool holds exactly one keep-alive connection."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def post(self, path: str, body: JSON | bytes) -> JSON:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.session.post(path, data=data, headers=_HEADERS) as response:
            payload = await response.read()
            if response.status != 200:
                raise CommandRefused(f"HTTP {response.status}: {payload[:200]!r}")
        result: JSON = json.loads(payload)
        return result


@contextlib.asynccontextmanager
async def open_clients(base_url: str, count: int) -> AsyncIterator[list[Client]]:
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for _ in range(count):
            session = aiohttp.ClientSession(
                base_url,
                connector=aiohttp.TCPConnector(limit=1),
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            )
            clients.append(Client(await stack.enter_async_context(session)))
        yield clients


Step = Callable[[Client, Samples], Awaitable[None]]


async def closed_loop(
    clients: Sequence[Client], steps: Sequence[Step], duration: float, samples: Samples
) -> Summary:
    """Each client runs its step back to back until the deadline."""
    deadline = time.perf_counter() + duration

    async def run(client: Client, step: Step) -> None:
        while time.perf_counter() < deadline:
            try:
                await step(client, samples)
            except _FAILURES as error:
                samples.fail(error)
                await asyncio.sleep(0.01)  # a refusing server must not become a busy loop

    started = time.perf_counter()
    async with asyncio.timeout(duration + GRACE):
        await asyncio.gather(*(run(c, s) for c, s in zip(clients, steps, strict=True)))
    return Summary.of(samples, time.perf_counter() - started)


def placing(path: str, customer_id: str) -> Step:
    body = json.dumps(place_body(customer_id)).encode()  # encoded once: client CPU is shared

    async def step(client: Client, samples: Samples) -> None:
        started = time.perf_counter()
        result = accepted(await client.post(path, body), "placeOrder")
        samples.add("place", time.perf_counter() - started, result.position)

    return step


def mixing(path: str, customer_id: str, seed: int) -> Step:
    book = OrderBook(customer_id, random.Random(seed))

    async def step(client: Client, samples: Samples) -> None:
        operation, field_name, body = book.next_command()
        started = time.perf_counter()
        result = accepted(await client.post(path, body), field_name)
        samples.add(operation, time.perf_counter() - started, result.position)
        if operation == "place":
            book.record_placed(result.order_id)

    return step


def querying(path: str, order_ids: Sequence[str], seed: int) -> Step:
    rng = random.Random(seed)
    bodies = [(oid, json.dumps(order_body(oid)).encode()) for oid in order_ids]

    async def step(client: Client, samples: Samples) -> None:
        order_id, body = rng.choice(bodies)
        started = time.perf_counter()
        response = await client.post(path, body)
        elapsed = time.perf_counter() - started
        order: dict[str, Any] | None = (response.get("data") or {}).get("order")
        if not order or order.get("id") != order_id:
            raise CommandRefused(f"order {order_id} missing: {str(response)[:200]}")
        samples.add("order", elapsed)

    return step


class CaughtUpSocket:
    """A graphql-transport-ws connection that waits for ``caughtUp(position:)`` events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, base_url: str, path: str = "/graphql") -> AsyncIterator[CaughtUpSocket]:
        # Its own session: a socket would hold a Client's only connection.
        timeout = aiohttp.ClientTimeout(total=None, connect=REQUEST_TIMEOUT)
        async with (
            aiohttp.ClientSession(base_url, timeout=timeout) as session,
            session.ws_connect(path, protocols=("graphql-transport-ws",)) as ws,
        ):
            await ws.send_json({"type": "connection_init", "payload": {}})
            async with asyncio.timeout(REQUEST_TIMEOUT):
                while (await ws.receive_json())["type"] != "connection_ack":
                    pass
            yield cls(ws)

    async def wait(self, position: int, within: float = REQUEST_TIMEOUT) -> float:
        """Subscribe, and return the perf_counter time at which the event arrived."""
        op_id = str(next(self._ids))
        payload = {"query": CAUGHT_UP, "variables": {"position": position}}
        await self._ws.send_json({"id": op_id, "type": "subscribe", "payload": payload})
        arrived: float | None = None
        async with asyncio.timeout(within):
            while True:  # ends on this operation's "complete" (or the timeout)
                message: JSON = await self._ws.receive_json()
                if message["type"] == "ping":
                    await self._ws.send_json({"type": "pong"})
                elif message.get("id") != op_id:
                    continue
                elif message["type"] == "next" and not message["payload"].get("errors"):
                    arrived = time.perf_counter()
                elif message["type"] == "complete":
                    break
                else:
                    raise CommandRefused(f"caughtUp({position}): {str(message)[:200]}")
        if arrived is None:
            raise CommandRefused(f"caughtUp({position}) completed without an event")
        return arrived


def probing(socket: CaughtUpSocket, customer_id: str, reached: int | None = None) -> Step:
    """Place an order, then subscribe to caughtUp(its position) at once: the figure is the
    time from the mutation's response to the event (what a client waits to read its write).

    With ``reached``, a position every projection has long reached is waited for instead:
    the same round trip at the same moment with nothing to wait for, the floor that the
    server's queue of requests sets."""
    place = placing("/graphql", customer_id)

    async def step(client: Client, samples: Samples) -> None:
        mine = Samples()
        await place(client, mine)
        responded = time.perf_counter()
        arrived = await socket.wait(mine.position if reached is None else reached)
        samples.add("read-your-writes", arrived - responded, mine.position)

    return step


def paced(step: Step, interval: float) -> Step:
    """The step at most once per ``interval`` seconds: an open-loop writer below saturation."""

    async def run(client: Client, samples: Samples) -> None:
        started = time.perf_counter()
        await step(client, samples)
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))

    return run


async def read_your_writes(
    base_url: str,
    clients: Sequence[Client],
    duration: float,
    probes: int,
    interval: float | None = None,
    reached: int | None = None,
) -> tuple[Summary, Summary]:
    """``probes`` clients measure read-your-writes while the others keep placing orders, flat
    out, or each once per ``interval`` seconds when it is given (``reached``: see ``probing``).
    Returns (read-your-writes latency, placeOrder of the writers beside them)."""
    probe_clients, writers = clients[:probes], clients[probes:]
    async with contextlib.AsyncExitStack() as stack:
        sockets = [
            await stack.enter_async_context(CaughtUpSocket.open(base_url)) for _ in probe_clients
        ]
        ryw, writes = Samples(), Samples()
        probe_steps = [probing(s, f"ryw-{i}", reached) for i, s in enumerate(sockets)]
        write_steps = [placing("/graphql", f"writer-{i}") for i in range(len(writers))]
        if interval is not None:
            probe_steps = [paced(step, interval) for step in probe_steps]
            write_steps = [paced(step, interval) for step in write_steps]
        ryw_summary, write_summary = await asyncio.gather(
            closed_loop(probe_clients, probe_steps, duration, ryw),
            closed_loop(writers, write_steps, duration, writes),
        )
    return ryw_summary, write_summary


async def catch_up(base_url: str, position: int, within: float = 120.0) -> float:
    """Wait until every projection has reached ``position``; return the seconds waited."""
    started = time.perf_counter()
    if position > 0:
        async with CaughtUpSocket.open(base_url) as socket:
            await socket.wait(position, within)
    return time.perf_counter() - started
