"""Several API replicas on one PostgreSQL, each applying the projections inline: every event
is projected exactly once and in order, beside a projector that starts behind."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import build_bus
from domain.eventstore.store import EventStore
from readmodels.names import PROJECTION_NAMES
from tests.support.graphql import OUTCOME, place_input
from tests.support.inline import Orders, checkpoint_positions
from tests.support.read_models import dump_after_full_rebuild, dump_read_models
from tests.support.serving import graphql_ws, serve_process

pytestmark = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)

SERVE = [sys.executable, "-m", "graph.runtime.cli", "serve", "--port", "{port}"]
ORDERS = [f"shared-{n}" for n in range(12)]  # both replicas act on the same orders


async def _send(http: httpx.AsyncClient, name: str, input: dict[str, Any]) -> dict[str, Any]:
    input_type = name[0].upper() + name[1:] + "Input"
    query = f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ {OUTCOME} }} }}"
    response = await http.post("/graphql", json={"query": query, "variables": {"input": input}})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["data"][name]
    return result


async def _client(http: httpx.AsyncClient, seed: int, rounds: int) -> None:
    """Places, re-addresses, pays and cancels shared orders: the replicas' appends race
    (and some of them lose, and are decided again, or refused)."""
    for n in itertools.islice(itertools.count(seed), rounds):
        order_id = ORDERS[n % len(ORDERS)]
        match n % 4:
            case 0:
                await _send(http, "placeOrder", place_input(orderId=order_id))
            case 1:
                address = place_input()["shippingAddress"] | {"line1": f"{n} Side St"}
                await _send(
                    http, "changeShippingAddress", {"orderId": order_id, "shippingAddress": address}
                )
            case 2:
                await _send(http, "payOrder", {"orderId": order_id, "amount": "40.28"})
            case _:
                await _send(http, "cancelOrder", {"orderId": order_id, "reason": "no"})
        await _send(http, "placeOrder", place_input(customerId=f"customer-{seed % 3}"))


@pytest.mark.timeout(300)
async def test_two_replicas_project_inline_exactly_once_and_in_order(
    engine: AsyncEngine, database_url: str
) -> None:
    # A backlog written before the replicas start: the projector (in the first replica)
    # is behind, so inline waits for it at first, in both.
    orders = Orders(build_bus(EventStore(engine)))
    for n in range(30):
        await orders.place(f"backlog-{n}", f"customer-{n % 3}")
    env = {**os.environ, "DATABASE_URL": database_url, "AUTH": "none", "MUTATION_RATE": "0"}
    env |= {"POLL_INTERVAL": "0.2", "INLINE_PROJECTIONS": "all"}
    async with (
        serve_process(SERVE, {**env, "RUN_PROJECTOR": "false"}) as second_url,
        httpx.AsyncClient(base_url=second_url, timeout=30) as second,
    ):
        async with (
            serve_process(SERVE, env) as first_url,
            httpx.AsyncClient(base_url=first_url, timeout=30) as first,
        ):
            await asyncio.gather(
                *(_client(http, seed, 30) for seed in range(3) for http in (first, second))
            )
            head = await EventStore(engine).head_position()
            async with graphql_ws(first_url + "/graphql") as ws:
                caught_up = await ws.subscribe(
                    "subscription($p: Position!) { caughtUp(position: $p) { position } }",
                    {"p": head},
                )
                assert [e async for e in caught_up] == [{"caughtUp": {"position": head}}]

        # The first replica (and the projector) gone: the second still projects its
        # writes at commit, on its own.
        accepted = await _send(second, "placeOrder", place_input())
        assert accepted["__typename"] == "CommandAccepted"
        assert await checkpoint_positions(engine) == dict.fromkeys(
            PROJECTION_NAMES, accepted["position"]
        )
    # Every event once, in order: the read models equal a replay from the first event.
    assert await dump_read_models(engine) == await dump_after_full_rebuild(engine)
