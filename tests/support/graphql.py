"""GraphQL documents and inputs the tests send, and a running app to send them to (real uvicorn,
real HTTP): ``running`` and its ``Server``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from domain.eventstore.store import EventStore
from graph.runtime.app import create_app
from graph.runtime.settings import Settings
from tests.support.serving import serve_app

OUTCOME = """
    __typename
    ... on CommandAccepted { commandId orderId version position }
    ... on InvalidInput { field message }
    ... on RuleViolated { rule message }
    ... on OrderNotFound { orderId message }
    ... on VersionConflict { expectedVersion actualVersion message }
"""


ORDER_FIELDS = """
    id customerId status total version placedAt paidAt shippedAt cancelledAt
    lines { sku quantity unitPrice lineTotal }
    shippingAddress { line1 line2 city postalCode country }
"""


def mutation(name: str, input_type: str) -> str:
    return f"mutation($input: {input_type}!) {{ {name}(input: $input) {{ {OUTCOME} }} }}"


PLACE = mutation("placeOrder", "PlaceOrderInput")


def place_input(**overrides: Any) -> dict[str, Any]:
    return {
        "customerId": "customer-42",
        "items": [
            {"sku": "BOOK-1", "quantity": 2, "unitPrice": "19.99"},
            {"sku": "PEN-7", "quantity": 3, "unitPrice": "0.10"},
        ],
        "shippingAddress": {
            "line1": "1 Main St",
            "city": "Springfield",
            "postalCode": "12345",
            "country": "US",
        },
        **overrides,
    }


@dataclass
class Server:
    url: str
    app: Starlette
    http: httpx.AsyncClient
    store: EventStore

    async def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert "errors" not in body, body["errors"]
        return body

    async def place(self, **overrides: Any) -> dict[str, Any]:
        body = await self.gql(PLACE, {"input": place_input(**overrides)})
        result: dict[str, Any] = body["data"]["placeOrder"]
        return result

    async def send(self, name: str, input_type: str, **input: Any) -> dict[str, Any]:
        body = await self.gql(mutation(name, input_type), {"input": input})
        result: dict[str, Any] = body["data"][name]
        return result


@contextlib.asynccontextmanager
async def running(
    engine: AsyncEngine, database_url: str, **overrides: Any
) -> AsyncIterator[Server]:
    settings = Settings(
        **{
            "database_url": database_url,
            "read_wait_seconds": 5,
            "poll_interval": 0.2,
            "auth": "none",  # these tests are about the contract; tests/e2e/test_access.py: tokens
            **overrides,
        }
    )
    app = create_app(settings)
    async with (
        serve_app(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield Server(url, app, http, EventStore(engine))
