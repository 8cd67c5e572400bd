"""Projection versions and operations over real HTTP with AUTH=jwt: ``projections`` shows
versions, build progress and skips; staff rebuild, retry and skip (the skip on record with
the token's subject); a customer is refused."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import CommandBus
from tests.support.access_harness import Desk, codes, desk
from tests.support.factories import place_order
from tests.support.read_models import insert_raw_event

STATUS = """
    __typename
    ... on ProjectionStatus { name state position version head error
        versions { version codeVersion status position lag state rate etaSeconds errorPosition }
        skipped { position version eventType reason skippedBy } }
    ... on ProjectionOperationRefused { message }
"""
REBUILD = f"mutation($n: String!) {{ rebuildProjection(input: {{name: $n}}) {{ {STATUS} }} }}"
RETRY = f"mutation($n: String!) {{ retryProjection(input: {{name: $n}}) {{ {STATUS} }} }}"
SKIP = (
    "mutation($n: String!, $p: Position!, $r: String!) { skipProjectionEvent("
    f"input: {{name: $n, position: $p, reason: $r}}) {{ {STATUS} }} }}"
)
PROJECTIONS = """query($p: Position) { projections(atLeast: $p) { name version state position
    versions { version status position } skipped { position reason skippedBy } } }"""


async def gql(desk: Desk, query: str, token: str, **variables: Any) -> dict[str, Any]:
    body = await desk.gql(query, variables, token=token)
    assert "errors" not in body, body
    assert "stale" not in body.get("extensions", {}), body
    data: dict[str, Any] = body["data"]
    return data


async def test_staff_rebuild_skip_and_retry_over_graphql(
    engine: AsyncEngine, database_url: str, bus: CommandBus
) -> None:
    for _ in range(20):
        head = (await bus.dispatch(place_order())).position
    async with desk(engine, database_url, poll_interval=0.1, read_wait_seconds=20) as server:
        staff = server.token("staff-test", "staff")
        found = (await gql(server, PROJECTIONS, staff, p=head))["projections"]
        assert {(p["name"], p["version"], p["state"]) for p in found} == {
            ("customer_summaries", 1, "live"),
            ("daily_sales", 1, "live"),
            ("order_views", 1, "live"),
        }

        started = (await gql(server, REBUILD, staff, n="daily_sales"))["rebuildProjection"]
        assert started["__typename"] == "ProjectionStatus"
        assert [(v["version"], v["status"]) for v in started["versions"]] in (
            [(1, "active"), (2, "building")],
            [(1, "retired"), (2, "active")],  # the projector was quick
        )
        # The projector builds it in the background; a read that waits for a later write
        # is answered by whichever version is active then, never by a half-built one.
        while True:
            head = (await bus.dispatch(place_order())).position
            found = {
                p["name"]: p for p in (await gql(server, PROJECTIONS, staff, p=head))["projections"]
            }
            if found["daily_sales"]["version"] == 2:
                break
        assert [(v["version"], v["status"]) for v in found["daily_sales"]["versions"]] == [
            (1, "retired"),
            (2, "active"),
        ]

        poisoned = await insert_raw_event(
            engine, "hand-edited", 1, "OrderPlaced", '{"order_id": "hand-edited"}'
        )
        refused = await gql(server, SKIP, staff, n="order_views", p=poisoned, r="x")
        assert refused["skipProjectionEvent"]["__typename"] == "ProjectionOperationRefused"
        assert "is not stopped at position" in refused["skipProjectionEvent"]["message"]
        async with asyncio.timeout(60):  # until the projector has met it: nothing to retry
            while True:
                retried = (await gql(server, RETRY, staff, n="order_views"))["retryProjection"]
                if retried["__typename"] == "ProjectionStatus":
                    break
                assert "nothing failed to retry" in retried["message"]
        assert retried["state"] == "failed"
        skipped = (await gql(server, SKIP, staff, n="order_views", p=poisoned, r="a hand edit"))[
            "skipProjectionEvent"
        ]
        assert skipped["__typename"] == "ProjectionStatus", skipped
        assert (skipped["state"], skipped["position"]) == ("live", poisoned)
        assert skipped["skipped"] == [
            {
                "position": poisoned,
                "version": 1,
                "eventType": "OrderPlaced",
                "reason": "a hand edit",
                "skippedBy": "staff-test",
            }
        ]


async def test_operations_over_graphql_are_refused_to_anyone_but_staff(
    engine: AsyncEngine, database_url: str, bus: CommandBus
) -> None:
    await bus.dispatch(place_order())
    async with desk(engine, database_url) as server:
        alice = server.token("alice", "customer", customer="alice")
        for query, variables in (
            (REBUILD, {"n": "order_views"}),
            (RETRY, {"n": "order_views"}),
            (SKIP, {"n": "order_views", "p": 1, "r": "x"}),
        ):
            assert codes(await server.gql(query, variables, token=alice)) == ["FORBIDDEN"]
            assert codes(await server.gql(query, variables, token=None)) == ["UNAUTHENTICATED"]
        found = (await gql(server, PROJECTIONS, alice))["projections"]
        assert all(p["version"] == 1 for p in found)
        assert all(p["skipped"] == [] for p in found)
