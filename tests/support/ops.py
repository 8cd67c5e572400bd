"""Helpers for the operations tests: a served app with chosen settings, and /metrics parsing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.store import EventStore
from graph.runtime.app import create_app
from graph.runtime.settings import Settings
from tests.support.graphql import Server
from tests.support.serving import serve_app


@contextlib.asynccontextmanager
async def running(
    engine: AsyncEngine, database_url: str, **overrides: Any
) -> AsyncIterator[Server]:
    options: dict[str, Any] = {
        "read_wait_seconds": 5,
        "poll_interval": 0.2,
        "auth": "none",
        **overrides,
    }
    app = create_app(Settings(database_url=database_url, **options))
    async with (
        serve_app(app) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as http,
    ):
        yield Server(url, app, http, EventStore(engine))


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_metrics(text: str) -> Samples:
    """Every sample as {(name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse_metrics(response.text)
