"""The GraphQL layer alone: ordergraph's real schema and HTTP app, with a command bus that
answers at once and stores nothing. Whatever placeOrder costs beyond this is storage and
projection; what this costs is the ceiling any storage could reach.

    python -m bench.graphql_ceiling --port 8899     # then drive POST /graphql with placeOrder
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from domain.commands import Command
from domain.eventstore.engines import create_engine
from domain.handlers import CommandResult
from graph.authn import UNRESTRICTED, Authenticator
from graph.context import Context, Services
from graph.http import graphql_app
from graph.rate_limit import RateLimiter
from graph.schema import build_schema
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.queries import ReadModelQueries
from readmodels.read_targets import ReadTargets
from readmodels.waiting import CheckpointWaiter


class InstantBus:
    """Accepts every command without storing it."""

    def __init__(self) -> None:
        self.position = 0

    async def dispatch(self, command: Command) -> CommandResult:
        self.position += 1
        return CommandResult(command.command_id, command.order_id, 1, self.position)


def create_app() -> Starlette:
    # Mutations only: the read side is there to type-check and is never read (an engine
    # connects on first use).
    unused = create_engine("sqlite:///:memory:")
    notifier = InProcessNotifier()
    services = Services(
        bus=InstantBus(),
        queries=ReadModelQueries(unused),
        waiter=CheckpointWaiter(unused, notifier, PROJECTION_NAMES),
        notifier=notifier,
        read_wait_seconds=0,
        authenticator=Authenticator(None),  # AUTH=none, as the benchmark's server runs
        mutation_limiter=RateLimiter(0, 1),
        reads=ReadTargets(unused, [], notifier, PROJECTION_NAMES),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield

    async def context(*_args: Any) -> Context:
        return Context(services=services, actor=UNRESTRICTED)

    graphql = graphql_app(build_schema(), max_body_bytes=256 * 1024, context_getter=context)
    return Starlette(
        routes=[Route("/graphql", graphql), WebSocketRoute("/graphql", graphql)],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8899)
    args = parser.parse_args()
    uvicorn.run(
        create_app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
