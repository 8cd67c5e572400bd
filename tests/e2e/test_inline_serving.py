"""Read-your-writes at commit, end to end: with the projections inline, a mutation's position
is reached by every one of them when its response arrives, over real HTTP and WebSocket."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import build_bus
from domain.eventstore.store import EventStore
from readmodels.builds import ensure_versions
from readmodels.names import PROJECTION_NAMES
from readmodels.registry import all_projections
from tests.support.graphql import running
from tests.support.inline import Orders, checkpoint_positions
from tests.support.read_models import dump_after_full_rebuild, dump_read_models
from tests.support.serving import graphql_ws

READ_BACK = """query($id: ID!, $at: Position) {
  order(id: $id, atLeast: $at) { id status }
  customer(id: "customer-42", atLeast: $at) { ordersPlaced }
}"""
CAUGHT_UP = "subscription($p: Position!) { caughtUp(position: $p) { position } }"


@pytest.fixture(autouse=True)
async def versions(engine: AsyncEngine) -> None:
    # No projector runs in these servers (it would catch up for them); its start-up's
    # checkpoints are made here instead.
    await ensure_versions(engine, all_projections())


async def test_a_mutation_is_visible_in_every_inline_projection_when_its_answer_arrives(
    engine: AsyncEngine, database_url: str
) -> None:
    # No projector, and atLeast may not wait at all: only the append's own transaction can
    # have made the write visible, and a read that finds it not reached answers stale.
    async with (
        running(
            engine,
            database_url,
            run_projector=False,
            read_wait_seconds=0,
            inline_projections=("all",),
        ) as server,
        graphql_ws(server.url + "/graphql") as ws,
    ):
        for _ in range(5):
            accepted = await server.place()
            position = accepted["position"]
            reached = await checkpoint_positions(engine)
            assert reached == dict.fromkeys(PROJECTION_NAMES, position)

            body = await server.gql(READ_BACK, {"id": accepted["orderId"], "at": position})
            assert "stale" not in body.get("extensions", {})
            assert body["data"]["order"] == {"id": accepted["orderId"], "status": "PLACED"}

            caught_up = await ws.subscribe(CAUGHT_UP, {"p": position})
            assert [e async for e in caught_up] == [{"caughtUp": {"position": position}}]


async def test_an_async_projection_beside_inline_ones_is_answered_stale_with_no_projector(
    engine: AsyncEngine, database_url: str
) -> None:
    async with running(
        engine,
        database_url,
        run_projector=False,
        read_wait_seconds=0,
        inline_projections=("order_views",),
    ) as server:
        accepted = await server.place()
        body = await server.gql(READ_BACK, {"id": accepted["orderId"], "at": accepted["position"]})
        listed = await server.gql("{ projections { name lifecycle } }")
    assert {p["name"]: p["lifecycle"] for p in listed["data"]["projections"]} == {
        "order_views": "INLINE",
        "customer_summaries": "ASYNC",
        "daily_sales": "ASYNC",
    }
    assert body["data"]["order"]["status"] == "PLACED"  # inline: there at once
    stale = body["extensions"]["stale"]  # async, and no projector runs
    assert [(s["field"], s["positions"]) for s in stale] == [
        ("customer", {"customer_summaries": 0})
    ]


async def test_a_write_inline_cannot_take_wakes_the_projector_at_once(
    engine: AsyncEngine, database_url: str
) -> None:
    # The projector polls only every minute. Events appended behind the server's back (by
    # another store: nothing tells its projector) leave every checkpoint behind the head,
    # so the server's next write cannot be applied inline: its projector must be woken for
    # it, and catch up through the backlog, for caughtUp to answer within seconds.
    async with (
        running(engine, database_url, poll_interval=60, inline_projections=("all",)) as server,
        graphql_ws(server.url + "/graphql") as ws,
    ):
        first = await server.place()
        caught_up = await ws.subscribe(CAUGHT_UP, {"p": first["position"]})
        assert [e async for e in caught_up] == [{"caughtUp": {"position": first["position"]}}]
        behind = Orders(build_bus(EventStore(engine)))
        for n in range(3):
            await behind.place(f"backlog-{n}", "customer-42")

        accepted = await server.place()
        caught_up = await ws.subscribe(CAUGHT_UP, {"p": accepted["position"]})
        assert [e async for e in caught_up] == [{"caughtUp": {"position": accepted["position"]}}]
    assert await dump_read_models(engine) == await dump_after_full_rebuild(engine)
