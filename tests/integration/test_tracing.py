"""OpenTelemetry (the ``otel`` extra): with TRACING on, a mutation over real HTTP leaves spans
for the request, the GraphQL operation, the command, the append and the SQL; with it off,
nothing of OpenTelemetry is even imported."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.support.ops import running

_exporter = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    # The global provider can be set once per process: set ours the first time.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_exporter))
        trace.set_tracer_provider(provider)
    _exporter.clear()
    yield _exporter
    _exporter.clear()


async def test_a_traced_mutation_leaves_its_spans(
    engine: AsyncEngine, database_url: str, spans: InMemorySpanExporter
) -> None:
    async with running(engine, database_url, tracing=True) as server:
        accepted = await server.place()
        assert accepted["__typename"] == "CommandAccepted"
    names = [span.name for span in spans.get_finished_spans()]
    assert "POST /graphql" in names  # starlette instrumentation
    assert any(name.startswith("GraphQL Query") for name in names)  # strawberry's extension
    assert "command PlaceOrder" in names
    assert "append" in names
    statements = [
        s for s in spans.get_finished_spans() if s.attributes and "db.statement" in s.attributes
    ]
    assert any(
        "INSERT INTO events" in str((s.attributes or {})["db.statement"]) for s in statements
    )
    resolver = next(
        s for s in spans.get_finished_spans() if s.name == "GraphQL Resolving: placeOrder"
    )
    assert not [key for key in resolver.attributes or {} if key.startswith("graphql.param")]
    by_name = {span.name: span for span in spans.get_finished_spans()}
    command, append = by_name["command PlaceOrder"], by_name["append"]
    assert append.parent is not None
    assert append.parent.span_id == command.context.span_id
    assert append.attributes is not None
    assert append.attributes["ordergraph.position"] == accepted["position"]


def test_without_tracing_nothing_of_opentelemetry_is_loaded(tmp_path: object) -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from graph.runtime.app import create_app; "
            "from graph.runtime.settings import Settings; "
            "create_app(Settings()); "
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"
