"""A server with AUTH=jwt (HS256) on a real socket, and a client that carries tokens."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.store import EventStore
from graph.runtime.app import create_app
from graph.runtime.settings import Settings
from graph.tokens import mint
from tests.support.graphql import PLACE, mutation, place_input
from tests.support.serving import serve_app

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


@dataclass
class Desk:
    url: str
    http: httpx.AsyncClient
    store: EventStore
    settings: Settings

    def token(self, subject: str, *roles: str, customer: str | None = None) -> str:
        return mint(self.settings, subject, roles, customer)

    def forged(self, secret: str = SECRET, **claims: Any) -> str:
        """A token with the given claims over sensible defaults, signed with ``secret``."""
        now = int(time.time())
        payload = {
            "sub": "mallory",
            "iss": self.settings.jwt_issuer,
            "aud": self.settings.jwt_audience,
            "exp": now + 600,
            "roles": ["staff"],
            **claims,
        }
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, "HS256")

    async def post(self, query: str, variables: dict[str, Any] | None, token: str | None) -> Any:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    async def gql(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None
    ) -> dict[str, Any]:
        """The response body; errors are left in it for the test to look at."""
        response = await self.post(query, variables, token)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None
    ) -> dict[str, Any]:
        body = await self.gql(query, variables, token=token)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data

    async def place(self, token: str, **overrides: Any) -> dict[str, Any]:
        data = await self.data(PLACE, {"input": place_input(**overrides)}, token=token)
        result: dict[str, Any] = data["placeOrder"]
        return result

    async def send(self, token: str, name: str, **input: Any) -> dict[str, Any]:
        input_type = name[0].upper() + name[1:] + "Input"
        data = await self.data(mutation(name, input_type), {"input": input}, token=token)
        result: dict[str, Any] = data[name]
        return result


@contextlib.asynccontextmanager
async def desk(engine: AsyncEngine, database_url: str, **overrides: Any) -> AsyncIterator[Desk]:
    settings = Settings(
        **{
            "database_url": database_url,
            "read_wait_seconds": 5,
            "poll_interval": 0.2,
            "auth": "jwt",
            "jwt_secret": SECRET,
            "mutation_rate": 0,  # off unless a test is about it
            **overrides,
        }
    )
    app = create_app(settings)
    async with (
        serve_app(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield Desk(url, http, EventStore(engine), settings)


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
