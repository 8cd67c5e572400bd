"""Where the relay runs: beside the projector in ``ordergraph serve`` when NATS_URL is set
(visible in ``projections``, waitable with ``caughtUp``), even with the broker away, and
``ordergraph relay --from`` to publish a range again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import CommandBus
from domain.eventstore.store import EventStore
from graph.runtime.settings import Settings
from integration.relay import FAILED
from readmodels.projector import Projector
from tests.support.graphql import running
from tests.support.jetstream import StreamUnderTest, stored_messages
from tests.support.relay_checks import (
    DEADLINE,
    assert_exactly_once_in_order,
    make_relay,
    many_orders,
    relay_subprocess,
)
from tests.support.serving import free_port, graphql_ws


async def test_serve_publishes_beside_the_projector_and_clients_can_wait_for_it(
    engine: AsyncEngine, store: EventStore, database_url: str, jetstream: StreamUnderTest
) -> None:
    nats = {
        "nats_url": jetstream.url,
        "nats_stream": jetstream.name,
        "nats_subject_prefix": jetstream.prefix,
    }
    async with running(engine, database_url, **nats) as server:
        accepted = await server.place()
        async with graphql_ws(server.url + "/graphql") as ws:
            caught_up = await ws.subscribe(
                "subscription($p: Position!) { caughtUp(position: $p, "
                'projections: ["integration"]) { position projections { name position lag } } }',
                {"p": accepted["position"]},
            )
            events = [event async for event in caught_up]
        body = await server.gql("{ projections { name position lag state error } }")
    assert events == [
        {
            "caughtUp": {
                "position": accepted["position"],
                "projections": [{"name": "integration", "position": 1, "lag": 0}],
            }
        }
    ]
    statuses = {p["name"]: p for p in body["data"]["projections"]}
    assert statuses["integration"] == {
        "name": "integration",
        "position": 1,
        "lag": 0,
        "state": "live",
        "error": None,
    }
    stored = await stored_messages(jetstream.url, jetstream.name)
    assert [m.body["orderId"] for m in stored] == [accepted["orderId"]]


async def test_serve_starts_and_takes_commands_with_the_broker_unreachable(
    engine: AsyncEngine, database_url: str
) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    async with running(engine, database_url, nats_url=nowhere) as server:
        accepted = await server.place()
        assert accepted["__typename"] == "CommandAccepted"
        async with asyncio.timeout(DEADLINE):
            while True:  # the relay reports, in `projections`, why it is held back
                body = await server.gql("{ projections { name state lag error } }")
                statuses = {p["name"]: p for p in body["data"]["projections"]}
                if statuses["integration"]["state"] == FAILED:
                    break
                await asyncio.sleep(0.05)
        ready = await server.http.get("/readyz")
        metrics = (await server.http.get("/metrics")).text
    assert statuses["integration"]["lag"] == 1
    # Clients get the reason's code and where (the detail is for operators)
    assert statuses["integration"]["error"].startswith("broker_unavailable: ")
    # Operators see it in /readyz and /metrics, but it does not make the process unready:
    # it goes on taking commands.
    assert ready.status_code == 200, ready.text
    relay = ready.json()["checks"]["projections"]["projections"]["integration"]
    assert (relay["state"], relay["lag"]) == (FAILED, 1)
    assert relay["error"].startswith("BrokerUnavailable: cannot connect to NATS at ")
    assert 'ordergraph_projection_lag_events{projection="integration"} 1.0' in metrics


async def test_relay_from_a_position_publishes_the_range_again_with_the_same_ids(
    engine: AsyncEngine,
    store: EventStore,
    bus: CommandBus,
    database_url: str,
    jetstream: StreamUnderTest,
) -> None:
    head = await many_orders(bus, orders=3)
    relay = make_relay(engine, jetstream)
    try:
        await relay.drain()
    finally:
        await relay.stop()

    async with relay_subprocess(
        database_url, jetstream, "relay", "--from", "5", module="graph.runtime.cli"
    ) as process:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), DEADLINE)
        assert line.decode().strip() == "relay: publishing again from position 5"
        line = await asyncio.wait_for(process.stdout.readline(), DEADLINE)
        assert line.decode().strip() == "relay running"
        async with asyncio.timeout(DEADLINE):
            while True:  # another process: poll the shared checkpoint
                if (await relay.status()).position >= head:
                    break
                await asyncio.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        report = (await asyncio.wait_for(process.stdout.read(), DEADLINE)).decode()
    # Within the broker's duplicate window every re-sent id is dropped, and the PubAcks say so.
    assert f"published 0, duplicates {head - 4}" in report
    stored = await stored_messages(jetstream.url, jetstream.name)
    assert len(stored) == head
    await assert_exactly_once_in_order(store, stored)


def test_the_relay_is_off_by_default_and_bad_nats_names_are_refused_at_start_up() -> None:
    default = Settings.from_env({})
    assert (default.nats_url, default.nats_stream, default.nats_subject_prefix) == (
        None,
        "ORDERS",
        "orders",
    )
    assert Settings.from_env({"NATS_SUBJECT_PREFIX": "acme.orders"}).nats_subject_prefix
    for wrong in ({"NATS_STREAM": "ORDERS.v1"}, {"NATS_SUBJECT_PREFIX": "orders.>"}):
        with pytest.raises(ValueError, match=next(iter(wrong))):
            Settings.from_env(wrong)


async def test_ordergraph_projections_shows_the_relay_beside_the_projections(
    engine: AsyncEngine,
    bus: CommandBus,
    projector: Projector,
    database_url: str,
    jetstream: StreamUnderTest,
) -> None:
    head = await many_orders(bus, orders=2)
    await projector.catch_up("order_views")
    relay = make_relay(engine, jetstream)
    try:
        await relay.drain()
    finally:
        await relay.stop()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.runtime.cli",
        "projections",
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await asyncio.wait_for(process.communicate(), DEADLINE)
    assert process.returncode == 0
    lines = output.decode().splitlines()
    table = lines[1 : next(i for i, line in enumerate(lines) if line.startswith("head "))]
    rows = {line.split()[0]: line.split()[1:6] for line in table}
    assert rows["integration"] == [str(head), "0", "0.0", "live", "-"]
    assert rows["order_views"] == [str(head), "0", "0.0", "live", "inline"]
