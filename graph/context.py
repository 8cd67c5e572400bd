"""What resolvers get: the services built by the app's lifespan, and per-request state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.bus import CommandBus
from graph.access import RequestInfo
from readmodels.notifier import Notifier
from readmodels.queries import ReadModelQueries
from readmodels.waiting import CheckpointWaiter


@dataclass(frozen=True)
class Services:
    """Built once per process by the lifespan (the composition root)."""

    bus: CommandBus
    queries: ReadModelQueries
    waiter: CheckpointWaiter
    notifier: Notifier
    read_wait_seconds: float


@dataclass
class Context:
    services: Services
    # Fields answered before their projection reached the requested position; reported in
    # the response's "extensions" (see graph/staleness.py).
    stale: list[dict[str, Any]] = field(default_factory=list)
    # The request's id, operation and outcome for its log line and metrics (graph/access.py).
    request: RequestInfo | None = None
