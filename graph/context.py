"""What resolvers get: the services built by the app's lifespan, and per-request state."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket

from domain.access import Actor
from domain.ports import CommandDispatcher
from graph.authn import Authenticator
from graph.budgets import Budgets
from graph.rate_limit import RateLimiter
from graph.runtime.request_log import RequestInfo
from readmodels.notifications.messages import Notifier
from readmodels.operations_bus import OperationsBus
from readmodels.order_changes import OrderChanges
from readmodels.queries import ReadModelQueries
from readmodels.read_targets import ReadTarget, ReadTargets
from readmodels.waiting import CheckpointWaiter


@dataclass(frozen=True)
class Services:
    """Built once per process by the lifespan (the composition root)."""

    bus: CommandDispatcher
    queries: ReadModelQueries
    waiter: CheckpointWaiter
    notifier: Notifier
    read_wait_seconds: float
    authenticator: Authenticator
    mutation_limiter: RateLimiter
    # Where queries are read: the standbys of READ_DATABASE_URLS, or the primary.
    reads: ReadTargets
    budgets: Budgets = field(default_factory=Budgets)
    order_changes: OrderChanges | None = None  # None: orderChanged is not served
    projection_ops: OperationsBus | None = None  # None: no projection operations
    inline: frozenset[str] = frozenset()  # the projections applied inline (INLINE_PROJECTIONS)


@dataclass
class Context:
    services: Services
    # Who is calling (graph/authn.py); on a WebSocket, set from its connection_init payload.
    actor: Actor
    # A WebSocket's connection_init payload (strawberry sets it).
    connection_params: dict[str, Any] | None = None
    # A WebSocket connection, and the task that closes it when its token expires.
    websocket: WebSocket | None = None
    expiry: asyncio.Task[None] | None = None
    # Fields answered before their projection reached the requested position; reported in
    # the response's "extensions" (see graph/staleness.py).
    stale: list[dict[str, Any]] = field(default_factory=list)
    # The request's id, operation and outcome for its log line and metrics
    # (graph/runtime/request_log.py).
    request: RequestInfo | None = None
    # The target that answered this request's first field: its other fields read there too.
    read_target: ReadTarget | None = None
