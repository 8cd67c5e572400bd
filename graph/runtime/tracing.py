"""OpenTelemetry tracing, the optional extra (``pip install 'ordergraph[otel]'``, TRACING=true).

Spans come from the maintained instrumentations where one exists: HTTP requests and WebSocket
connections (opentelemetry-instrumentation-starlette), GraphQL operations and resolvers
(strawberry's OpenTelemetryExtension), database statements
(opentelemetry-instrumentation-sqlalchemy); and from us for what only we know: one span per
command and one per append. Nothing here is imported unless TRACING is on, so without the
extra (or with it off) tracing costs nothing.

Spans go to the tracer provider already set (``opentelemetry-instrument``, or a test's);
without one, to an OTLP exporter configured by the standard OTEL_* variables.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from strawberry.extensions import SchemaExtension
from strawberry.extensions.tracing import OpenTelemetryExtension

from domain.bus import CommandBus
from domain.commands import Command
from domain.eventstore.store import (
    AppendResult,
    CommandRecord,
    EventStore,
    ExpectedVersion,
    NewEvent,
)
from domain.handlers import COMMAND_HANDLERS, CommandResult, HandlerContext

_REQUIRED = (
    "opentelemetry.sdk",
    "opentelemetry.instrumentation.starlette",
    "opentelemetry.instrumentation.sqlalchemy",
)

tracer = trace.get_tracer("ordergraph")


def available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in _REQUIRED)


def ensure_provider() -> None:
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return  # someone (opentelemetry-instrument, a test) has set one up
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    service = os.environ.get("OTEL_SERVICE_NAME", "ordergraph")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)


def instrument_app(app: Starlette) -> None:
    from opentelemetry.instrumentation.starlette import StarletteInstrumentor

    ensure_provider()
    StarletteInstrumentor.instrument_app(app)


def instrument_engine(engine: AsyncEngine) -> None:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # Its declared range stops below SQLAlchemy 2.1, which we run; it hooks the engine's
    # cursor events, which 2.1 keeps (tests/integration/test_tracing.py checks the statements'
    # spans).
    instrumentor = SQLAlchemyInstrumentor()  # one per process: it traces the latest engine
    if instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.uninstrument()
    instrumentor.instrument(engine=engine.sync_engine, skip_dep_check=True)


def _no_arguments(_args: dict[str, Any], _info: Any) -> dict[str, Any]:
    return {}  # resolver arguments hold customers' addresses: keep them out of spans


def schema_extensions() -> list[Callable[[], SchemaExtension]]:
    return [lambda: OpenTelemetryExtension(arg_filter=_no_arguments)]


class TracedEventStore(EventStore):
    async def append(
        self,
        stream_id: str,
        new_events: Sequence[NewEvent],
        expected_version: ExpectedVersion,
        command: CommandRecord | None = None,
    ) -> AppendResult:
        attributes: dict[str, Any] = {
            "ordergraph.stream_id": stream_id,
            "ordergraph.events": len(new_events),
        }
        with tracer.start_as_current_span("append", attributes=attributes) as span:
            result = await super().append(stream_id, new_events, expected_version, command)
            span.set_attribute("ordergraph.position", result.position)
            return result


class TracedCommandBus(CommandBus):
    async def dispatch(self, command: Command) -> CommandResult:
        with tracer.start_as_current_span(f"command {type(command).__name__}"):
            return await super().dispatch(command)


def traced_bus(store: EventStore) -> CommandBus:
    return TracedCommandBus(HandlerContext(store), COMMAND_HANDLERS)
