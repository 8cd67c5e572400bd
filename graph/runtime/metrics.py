"""Prometheus metrics: what each process counts, and ``/metrics``.

Two kinds:

- Counted by each process as things happen (requests, commands, appends, projector passes,
  read-your-writes waits, subscriptions, reconnects): prometheus-client metrics, module-level
  as that library intends. With several workers (``PROMETHEUS_MULTIPROC_DIR`` set before this
  module is imported, which ``ordergraph serve --workers`` does), each process writes its
  values to files there and a scrape of any worker adds them all up.
- Read from the database at scrape time (event-store head, each projection's position, lag in
  events and seconds, state, stalled): the same in every process, so taken fresh rather than
  kept per worker (see graph/runtime/health.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from graph.runtime.health import ProjectionHealth
    from readmodels.read_targets import ReadTargets

_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "ordergraph_requests",
    "GraphQL requests over HTTP by operation (root fields) and outcome (the typed result "
    "member of a mutation, ok, error, invalid, or the HTTP status)",
    ["operation", "outcome"],
)
REQUEST_SECONDS = Histogram(
    "ordergraph_request_duration_seconds",
    "GraphQL request latency over HTTP, by operation",
    ["operation"],
    buckets=_LATENCY,
)
COMMANDS = Counter(
    "ordergraph_commands", "Commands dispatched, by command and outcome", ["command", "outcome"]
)
APPEND_BATCH_SIZE = Histogram(
    "ordergraph_append_batch_size",
    "Appends committed together in one group-commit transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
APPEND_COMMIT_SECONDS = Histogram(
    "ordergraph_append_commit_seconds",
    "Time of one group-commit transaction, from BEGIN to COMMIT",
    buckets=_LATENCY,
)
PROJECTION_PASS_SECONDS = Histogram(
    "ordergraph_projection_pass_seconds",
    "Time of one committed projector pass (or inline application), by projection",
    ["projection"],
    buckets=_LATENCY,
)
PROJECTED_EVENTS = Counter(
    "ordergraph_projected_events", "Events applied by this process, by projection", ["projection"]
)
READ_WAITS = Counter(
    "ordergraph_read_waits",
    "atLeast reads, by outcome (reached, timeout)",
    ["outcome"],
)
READ_WAIT_SECONDS = Histogram(
    "ordergraph_read_wait_seconds", "How long atLeast reads waited", buckets=_LATENCY
)
READ_WAITERS = Gauge(
    "ordergraph_read_waiters", "atLeast reads waiting now", multiprocess_mode="livesum"
)
OPEN_SUBSCRIPTIONS = Gauge(
    "ordergraph_open_subscriptions", "GraphQL subscriptions open now", multiprocess_mode="livesum"
)
READ_RETRIES = Counter(
    "ordergraph_read_retries",
    "Reads a standby could not answer (unreachable, or cancelled by a replay conflict), "
    "answered by another target",
)
NOTIFIER_RECONNECTS = Counter(
    "ordergraph_notifier_reconnects", "LISTEN connections re-established after a loss"
)


class RequestCounters:
    """Children of the request metrics per (operation, outcome), looked up once: a request
    pays two dictionary look-ups and two increments, not ``labels()`` argument handling."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], Counter] = {}
        self._latency: dict[str, Histogram] = {}

    def observe(self, operation: str, outcome: str, seconds: float) -> None:
        count = self._counts.get((operation, outcome))
        if count is None:
            count = self._counts[operation, outcome] = REQUESTS.labels(operation, outcome)
        latency = self._latency.get(operation)
        if latency is None:
            latency = self._latency[operation] = REQUEST_SECONDS.labels(operation)
        count.inc()
        latency.observe(seconds)


def observe_append_batch(size: int, seconds: float) -> None:
    APPEND_BATCH_SIZE.observe(size)
    APPEND_COMMIT_SECONDS.observe(seconds)


def observe_projector_pass(names: Sequence[str], applied: int, seconds: float) -> None:
    for name in names:
        PROJECTION_PASS_SECONDS.labels(name).observe(seconds)
        PROJECTED_EVENTS.labels(name).inc(applied)


class _DatabaseCollector(Collector):
    """The figures read from the database for this scrape."""

    def __init__(
        self,
        head: int | None,
        projections: Sequence[ProjectionHealth],
        reads: ReadTargets | None = None,
    ) -> None:
        self.head = head
        self.projections = projections
        self.reads = reads

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ordergraph_database_up", "1 if this scrape could read the database")
        up.add_metric([], 0 if self.head is None else 1)
        yield up
        if self.head is None:
            return
        head = GaugeMetricFamily("ordergraph_event_store_head", "Position of the newest event")
        head.add_metric([], self.head)
        yield head
        families = {
            "position": GaugeMetricFamily(
                "ordergraph_projection_position", "Checkpoint position", labels=["projection"]
            ),
            "lag": GaugeMetricFamily(
                "ordergraph_projection_lag_events",
                "Events appended but not yet projected",
                labels=["projection"],
            ),
            "lag_seconds": GaugeMetricFamily(
                "ordergraph_projection_lag_seconds",
                "Age of the oldest event not yet projected (0 when caught up)",
                labels=["projection"],
            ),
            "stalled": GaugeMetricFamily(
                "ordergraph_projection_stalled",
                "1 if behind the head and not moving for STALL_SECONDS",
                labels=["projection"],
            ),
        }
        state = GaugeMetricFamily(
            "ordergraph_projection_state",
            "1 for the projection's current state",
            labels=["projection", "state"],
        )
        for p in self.projections:
            families["position"].add_metric([p.name], p.position)
            families["lag"].add_metric([p.name], p.lag)
            families["lag_seconds"].add_metric([p.name], p.lag_seconds)
            families["stalled"].add_metric([p.name], 1 if p.stalled else 0)
            for candidate in ("live", "rebuilding", "failed"):
                state.add_metric([p.name, candidate], 1 if p.state == candidate else 0)
        yield from families.values()
        yield state
        yield from self._read_targets()

    def _read_targets(self) -> Iterator[Metric]:
        if self.reads is None or not self.reads.standbys:
            return
        in_use = GaugeMetricFamily(
            "ordergraph_read_target_in_use", "1 if queries go to this standby", labels=["target"]
        )
        lag_seconds = GaugeMetricFamily(
            "ordergraph_read_target_lag_seconds",
            "The standby's replay lag at its last health check",
            labels=["target"],
        )
        lag = GaugeMetricFamily(
            "ordergraph_read_target_lag_events",
            "Events the standby's checkpoint is behind the primary's",
            labels=["target", "projection"],
        )
        for target in self.reads.standbys:
            in_use.add_metric([target.name], 1 if target.in_use else 0)
            if target.lag_seconds is not None:
                lag_seconds.add_metric([target.name], target.lag_seconds)
        for name in self.reads.names:
            for status in self.reads.statuses(name):
                if status.lag is not None:
                    lag.add_metric([status.target, name], status.lag)
        yield from (in_use, lag_seconds, lag)


def _process_metrics() -> bytes:
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return generate_latest(REGISTRY)
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


async def metrics_endpoint(request: Request) -> Response:
    from graph.runtime.health import projection_health

    operations = request.app.state.operations
    try:
        head, projections = await projection_health(
            operations.engine, operations.stall_seconds, within=operations.check_timeout
        )
    except Exception:  # the database is away: say so in the scrape rather than failing it
        head, projections = None, []
    database = CollectorRegistry()
    database.register(_DatabaseCollector(head, projections, operations.reads))
    body = _process_metrics() + generate_latest(database)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def mark_worker_gone() -> None:
    """In multiprocess mode, drop this process's live gauges when it stops."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
