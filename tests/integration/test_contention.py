"""Commands without expectedVersion are never refused for a conflict they did not ask about:
32 concurrent changes of one order's address over HTTP are all accepted, through one server
(both databases) and spread over two server processes (PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.repository import stream_id
from domain.eventstore.store import EventStore
from tests.support.graphql import PLACE, mutation, place_input, running
from tests.support.serving import serve_process

CHANGE = mutation("changeShippingAddress", "ChangeShippingAddressInput")
CONCURRENT = 32


def change_input(order_id: str, n: int) -> dict[str, Any]:
    address = {"line1": f"{n} Side St", "city": "Shelbyville", "postalCode": "54321"}
    return {"orderId": order_id, "shippingAddress": {**address, "country": "US"}}


async def change_concurrently(clients: list[httpx.AsyncClient], order_id: str) -> list[Any]:
    async def change(n: int) -> Any:
        client = clients[n % len(clients)]
        variables = {"input": change_input(order_id, n)}
        response = await client.post("/graphql", json={"query": CHANGE, "variables": variables})
        return response.json()["data"]["changeShippingAddress"]

    return list(await asyncio.gather(*(change(n) for n in range(CONCURRENT))))


async def place(client: httpx.AsyncClient) -> str:
    response = await client.post(
        "/graphql", json={"query": PLACE, "variables": {"input": place_input()}}
    )
    order_id: str = response.json()["data"]["placeOrder"]["orderId"]
    return order_id


def assert_all_accepted(outcomes: list[Any]) -> None:
    assert [o["__typename"] for o in outcomes] == ["CommandAccepted"] * CONCURRENT, outcomes
    assert sorted(o["version"] for o in outcomes) == list(range(2, CONCURRENT + 2))


async def test_concurrent_unconditional_commands_through_one_server_are_all_accepted(
    engine: AsyncEngine, database_url: str
) -> None:
    async with running(engine, database_url) as server:
        order_id = await place(server.http)
        outcomes = await change_concurrently([server.http], order_id)
    assert_all_accepted(outcomes)
    assert len(await EventStore(engine).read_stream(stream_id(order_id))) == CONCURRENT + 1


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_concurrent_unconditional_commands_across_two_replicas_are_all_accepted(
    engine: AsyncEngine, database_url: str
) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "RUN_PROJECTOR": "false", "AUTH": "none"}
    command = [sys.executable, "-m", "graph.runtime.cli", "serve", "--port", "{port}"]
    async with (
        serve_process(command, env) as first_url,
        serve_process(command, env) as second_url,
        httpx.AsyncClient(base_url=first_url, timeout=60) as first,
        httpx.AsyncClient(base_url=second_url, timeout=60) as second,
    ):
        order_id = await place(first)
        outcomes = await change_concurrently([first, second], order_id)
    assert_all_accepted(outcomes)
    assert len(await EventStore(engine).read_stream(stream_id(order_id))) == CONCURRENT + 1
