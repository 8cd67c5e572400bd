"""AUTH modes, the production switch, the per-subject mutation rate limit, the token command,
and the rule that every root field carries a permission."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from strawberry.permission import PermissionExtension

from graph.mutations import Mutation
from graph.queries import Query
from graph.rate_limit import RateLimiter
from graph.runtime.app import create_app
from graph.runtime.settings import InvalidSettings, Settings
from graph.subscriptions import Subscription
from graph.types import Order, ProjectionStatus
from tests.support.access_harness import SECRET, Desk, codes, desk
from tests.support.graphql import PLACE, place_input
from tests.support.serving import serve_app

PG = "postgresql://postgres@127.0.0.1:5432/orders"


def test_sqlite_defaults_to_auth_none_and_postgresql_needs_a_choice() -> None:
    assert Settings().auth_mode == "none"
    with pytest.raises(InvalidSettings, match="AUTH is not set"):
        _ = Settings(database_url=PG).auth_mode
    with pytest.raises(InvalidSettings, match="AUTH is not set"):
        _ = Settings(environment="production").auth_mode
    assert Settings(database_url=PG, auth="none").auth_mode == "none"
    assert Settings(database_url=PG, auth="jwt", jwt_secret=SECRET).auth_mode == "jwt"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (Settings(auth="jwt"), "exactly one of"),
        (Settings(auth="jwt", jwt_secret=SECRET, jwt_jwks="keys.json"), "exactly one of"),
        (Settings(auth="jwt", jwt_secret="short"), "at least 32 bytes"),
        (Settings(auth="jwt", jwt_secret=SECRET, jwt_leeway=3600), "JWT_LEEWAY"),
        (Settings(auth="basic"), "AUTH must be none or jwt"),
    ],
)
def test_a_wrong_auth_setting_is_refused_with_what_is_wrong(
    settings: Settings, message: str
) -> None:
    with pytest.raises(InvalidSettings, match=message):
        _ = settings.auth_mode


async def test_serve_on_postgresql_without_auth_exits_with_one_clear_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "AUTH"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.runtime.cli",
        "serve",
        env={**env, "DATABASE_URL": PG},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ordergraph: AUTH is not set")


async def test_the_token_command_mints_a_token_the_server_accepts(
    engine: AsyncEngine, database_url: str
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.runtime.cli",
        *("token", "--sub", "alice", "--role", "customer", "--customer", "alice"),
        env={**os.environ, "AUTH": "jwt", "JWT_SECRET": SECRET},
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0
    token = stdout.decode().strip()
    claims = jwt.decode(token, SECRET, ["HS256"], audience="ordergraph")
    assert (claims["sub"], claims["roles"], claims["customer_id"]) == (
        "alice",
        ["customer"],
        "alice",
    )
    async with desk(engine, database_url) as server:
        placed = await server.place(token, customerId="alice")
        assert placed["__typename"] == "CommandAccepted"


async def test_auth_none_warns_once_at_start_up(
    engine: AsyncEngine, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(Settings(database_url=database_url, auth="none"))
    with caplog.at_level(logging.WARNING, logger="ordergraph"):
        async with app.router.lifespan_context(app):
            pass
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().startswith("AUTH=")
    ]
    assert len(warnings) == 1
    assert "every caller may read and change every order" in warnings[0]


@pytest.fixture
async def production(engine: AsyncEngine, database_url: str) -> AsyncIterator[Desk]:
    async with desk(engine, database_url, environment="production") as server:
        yield server


@pytest.fixture
async def development(engine: AsyncEngine, database_url: str) -> AsyncIterator[Desk]:
    async with desk(engine, database_url) as server:
        yield server


TYPO = "{ ordrs { totalCount } }"
BAD_ENUM = "query($s: OrderStatus) { orders(status: $s) { totalCount } }"


async def test_production_hides_introspection_suggestions_and_the_playground(
    production: Desk,
) -> None:
    token = production.token("sam", "staff")
    for query in ("{ __schema { types { name } } }", '{ __type(name: "Order") { name } }'):
        body = await production.gql(query, token=token)
        assert "introspection" in body["errors"][0]["message"].lower()
        assert "data" not in body
    typo = await production.gql(TYPO, token=token)
    assert "Did you mean" not in typo["errors"][0]["message"]
    assert "ordrs" in typo["errors"][0]["message"]
    enum = await production.gql(BAD_ENUM, {"s": "PAYED"}, token=token)
    assert "Did you mean" not in enum["errors"][0]["message"]

    page = await production.http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 404
    # Ordinary work goes on.
    assert await production.data("{ orders { totalCount } }", token=token) == {
        "orders": {"totalCount": 0}
    }


async def test_development_keeps_introspection_and_suggestions(development: Desk) -> None:
    token = development.token("sam", "staff")
    assert "__schema" in await development.data("{ __schema { types { name } } }", token=token)
    typo = await development.gql(TYPO, token=token)
    assert "Did you mean 'orders'" in typo["errors"][0]["message"]
    enum = await development.gql(BAD_ENUM, {"s": "PAYED"}, token=token)
    assert "Did you mean" in enum["errors"][0]["message"]


def test_the_rate_limiter_refills_at_its_rate() -> None:
    now = [100.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    assert [limiter.take("alice") for _ in range(3)] == [None, None, None]
    assert limiter.take("alice") == pytest.approx(0.5)
    assert limiter.take("bob") is None  # each subject has its own bucket
    now[0] += 0.5
    assert limiter.take("alice") is None
    assert limiter.take("alice") == pytest.approx(0.5)
    now[0] += 60
    assert [limiter.take("alice") for _ in range(4)][-1] is not None  # refills to burst only
    assert RateLimiter(rate=0, burst=1).take("anyone") is None  # 0: off


def test_the_rate_limiter_forgets_the_least_recent_subjects() -> None:
    limiter = RateLimiter(rate=1.0, burst=1, max_subjects=2)
    for subject in ("a", "b", "c"):
        limiter.take(subject)
    assert limiter.take("c") is not None  # still remembered: empty
    assert limiter.take("a") is None  # forgotten: a fresh, full bucket


async def test_one_subject_cannot_flood_the_write_path(
    engine: AsyncEngine, database_url: str
) -> None:
    async with desk(engine, database_url, mutation_rate=0.01, mutation_burst=2) as server:
        alice = server.token("alice", "customer", customer="alice")
        bob = server.token("bob", "customer", customer="bob")
        for _ in range(2):
            assert (await server.place(alice, customerId="alice"))["__typename"] == (
                "CommandAccepted"
            )
        head = await server.store.head_position()
        body = await server.gql(PLACE, {"input": place_input(customerId="alice")}, token=alice)
        assert codes(body) == ["RATE_LIMITED"]
        assert body["errors"][0]["extensions"]["retryAfter"] > 0
        assert await server.store.head_position() == head
        # Reads are not limited, and another subject has a bucket of its own.
        assert await server.data("{ orders { totalCount } }", token=alice)
        assert (await server.place(bob, customerId="bob"))["__typename"] == "CommandAccepted"


async def test_auth_none_has_no_rate_limit(engine: AsyncEngine, database_url: str) -> None:
    settings = Settings(
        database_url=database_url, auth="none", mutation_rate=0.01, mutation_burst=1
    )
    async with (
        serve_app(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        for _ in range(3):
            response = await http.post(
                "/graphql", json={"query": PLACE, "variables": {"input": place_input()}}
            )
            assert response.json()["data"]["placeOrder"]["__typename"] == "CommandAccepted"


def test_every_root_field_and_guarded_field_carries_a_permission() -> None:
    roots = [Query, Mutation, Subscription]
    fields = [f for root in roots for f in root.__strawberry_definition__.fields]  # type: ignore[attr-defined]
    assert len(fields) == 14
    unguarded = [
        f.python_name
        for f in fields
        if not any(isinstance(e, PermissionExtension) for e in f.extensions)
    ]
    assert unguarded == []
    for type_, name in [(Order, "history"), (ProjectionStatus, "error")]:
        (field,) = [f for f in type_.__strawberry_definition__.fields if f.python_name == name]  # type: ignore[attr-defined]
        assert any(isinstance(e, PermissionExtension) for e in field.extensions)


def test_the_token_command_offers_the_roles_of_the_policy() -> None:
    from domain import access
    from graph.runtime import cli

    assert cli.ROLES == access.ROLES
