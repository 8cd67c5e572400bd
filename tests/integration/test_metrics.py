"""/metrics over real HTTP, on both databases: present, and moving under a workload."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.graphql import mutation
from tests.support.ops import running, scrape, value
from tests.support.serving import graphql_ws

PAY = mutation("payOrder", "PayOrderInput")
ORDER_AT = "query($id: ID!, $at: Position) { order(id: $id, atLeast: $at) { status } }"


async def test_metrics_move_under_a_workload(engine: AsyncEngine, database_url: str) -> None:
    async with running(engine, database_url) as server:
        before = await scrape(server.http)
        async with graphql_ws(server.url + "/graphql") as ws:
            updates = await ws.subscribe("subscription { projectionUpdated { position } }")
            # wait until the subscription is open: the gauge says so
            async with asyncio.timeout(20):
                while True:
                    if value(await scrape(server.http), "ordergraph_open_subscriptions") >= 1:
                        break
                    await asyncio.sleep(0.02)
            placed = await asyncio.gather(*(server.place() for _ in range(12)))
            refused = await server.gql(
                PAY, {"input": {"orderId": placed[0]["orderId"], "amount": "1.00"}}
            )
            assert refused["data"]["payOrder"]["__typename"] == "RuleViolated"
            head = max(p["position"] for p in placed)
            read = await server.gql(ORDER_AT, {"id": placed[-1]["orderId"], "at": head})
            assert read["data"]["order"]["status"] == "PLACED"
            await anext(updates)
            during = await scrape(server.http)
        await server.http.post(
            "/graphql", content=b"{", headers={"content-type": "application/json"}
        )
        after = await scrape(server.http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        moved("ordergraph_requests_total", operation="placeOrder", outcome="CommandAccepted") == 12
    )
    assert moved("ordergraph_requests_total", operation="payOrder", outcome="RuleViolated") == 1
    assert moved("ordergraph_requests_total", operation="order", outcome="ok") == 1
    assert moved("ordergraph_requests_total", operation="-", outcome="400") == 1
    assert moved("ordergraph_commands_total", command="PlaceOrder", outcome="CommandAccepted") == 12
    assert moved("ordergraph_commands_total", command="PayOrder", outcome="RuleViolated") == 1
    assert moved("ordergraph_request_duration_seconds_count", operation="placeOrder") == 12
    # group commit: every accepted append went through some batch
    assert moved("ordergraph_append_batch_size_sum") == 12
    assert moved("ordergraph_append_batch_size_count") >= 1
    assert moved("ordergraph_append_commit_seconds_count") >= 1
    assert moved("ordergraph_read_waits_total", outcome="reached") == 1
    assert moved("ordergraph_read_wait_seconds_count") == 1
    assert value(during, "ordergraph_open_subscriptions") == 1
    assert value(after, "ordergraph_open_subscriptions") == 0
    assert value(after, "ordergraph_read_waiters") == 0
    for name in ("order_views", "customer_summaries", "daily_sales"):
        assert moved("ordergraph_projected_events_total", projection=name) >= 12
        assert moved("ordergraph_projection_pass_seconds_count", projection=name) >= 1
    # read from the database at scrape time
    assert value(after, "ordergraph_database_up") == 1
    assert value(after, "ordergraph_event_store_head") == head
    assert value(after, "ordergraph_projection_position", projection="order_views") == head
    assert value(after, "ordergraph_projection_lag_events", projection="order_views") == 0
    assert value(after, "ordergraph_projection_lag_seconds", projection="order_views") == 0
    assert value(after, "ordergraph_projection_state", projection="order_views", state="live") == 1
    assert value(after, "ordergraph_projection_stalled", projection="order_views") == 0
