"""A database outage is a typed, retryable answer (503, Retry-After, SERVICE_UNAVAILABLE),
never a masked bug; and a command re-sent after the outage gets its first answer."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from graph.outages import SERVICE_UNAVAILABLE
from graph.runtime.app import create_app
from graph.runtime.settings import Settings
from tests.support.graphql import PLACE, place_input
from tests.support.private_postgres import PrivatePostgres, private_postgres
from tests.support.serving import GraphQLWebSocketError, graphql_ws, serve_app

# The server's DB_TIMEOUT in this test; an outage must be answered well within a few of them.
DB_TIMEOUT = 3.0


@pytest.fixture
async def own_postgres() -> AsyncIterator[PrivatePostgres]:
    async with private_postgres() as server:
        yield server


async def place(http: httpx.AsyncClient, command_id: str, **headers: str) -> httpx.Response:
    variables = {"input": place_input(commandId=command_id)}
    return await http.post(
        "/graphql", json={"query": PLACE, "variables": variables}, headers=headers
    )


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == SERVICE_UNAVAILABLE
    assert "unavailable" in error["message"]


async def test_an_outage_is_a_retryable_503_and_commands_resent_get_their_first_answer(
    own_postgres: PrivatePostgres,
) -> None:
    settings = Settings(
        database_url=own_postgres.url, db_timeout=DB_TIMEOUT, poll_interval=0.2, auth="none"
    )
    before, during = str(uuid.uuid4()), str(uuid.uuid4())
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        first = (await place(http, before)).json()["data"]["placeOrder"]
        assert first["__typename"] == "CommandAccepted"

        await own_postgres.stop("fast")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert_unavailable(await place(http, during))
        first_answer = loop.time() - started
        assert_unavailable(await place(http, during, accept="application/graphql-response+json"))
        query = {"query": f'{{ order(id: "{first["orderId"]}") {{ status }} }}'}
        assert_unavailable(await http.get("/graphql", params=query))
        assert loop.time() - started < 3 * DB_TIMEOUT
        await _assert_unavailable_over_websocket(url, first["orderId"])

        await own_postgres.start()
        accepted = await _until_answered(http, during)
        assert accepted["__typename"] == "CommandAccepted"
        again = (await place(http, during)).json()["data"]["placeOrder"]
        assert again == accepted  # the first answer, not a second order
        assert (await place(http, before)).json()["data"]["placeOrder"] == first
    print(f"\nfirst answer with the database stopped: 503 after {first_answer * 1000:.0f} ms")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_sqlite_database_locked_by_another_process_is_a_retryable_503(
    engine: AsyncEngine, database_url: str
) -> None:
    settings = Settings(database_url=database_url, db_timeout=0.5, poll_interval=0.2, auth="none")
    command_id = str(uuid.uuid4())
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        other_process = await asyncio.to_thread(_hold_write_lock, str(engine.url.database))
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert_unavailable(await place(http, command_id))
            assert loop.time() - started < 20  # a few busy timeouts, not forever
        finally:
            await asyncio.to_thread(other_process.close)  # rolls back, frees the lock
        accepted = await _until_answered(http, command_id)
        assert accepted["__typename"] == "CommandAccepted"
        assert (await place(http, command_id)).json()["data"]["placeOrder"] == accepted


def _hold_write_lock(path: str) -> sqlite3.Connection:
    """What another process writing to the same file does: hold its write lock."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
    connection.execute("BEGIN IMMEDIATE")
    return connection


async def _assert_unavailable_over_websocket(url: str, order_id: str) -> None:
    async with graphql_ws(url + "/graphql") as ws:
        changes = await ws.subscribe(
            "subscription($id: ID!) { orderChanged(id: $id) { status } }", {"id": order_id}
        )
        with pytest.raises(GraphQLWebSocketError) as refused:
            await anext(changes)
    (errors,) = refused.value.args  # the errors of the operation's payload
    assert [e["extensions"]["code"] for e in errors] == [SERVICE_UNAVAILABLE]


async def _until_answered(http: httpx.AsyncClient, command_id: str) -> dict[str, Any]:
    """Re-send as a client would, honouring Retry-After, until the service answers."""
    for _ in range(30):
        response = await place(http, command_id)
        if response.status_code != 503:
            break
        await asyncio.sleep(float(response.headers["retry-after"]))
    outcome: dict[str, Any] = response.json()["data"]["placeOrder"]
    return outcome
