"""The composition root: every entry point (``serve``, ``project``, ``relay``, ``migrate``,
``rebuild``, ``projections``, the benchmark and the tests) builds what it runs here, from
``Settings``, and tears it down here.

``engine_for`` is the one way to an engine; ``running_core`` adds the event store, notifier,
projector, relay and read targets; ``running_service`` adds what the GraphQL app serves with.
Nothing is built at import time."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.engines import create_engine
from domain.eventstore.store import EventStore
from graph.runtime.settings import Settings
from graph.runtime.standby_checks import warn_about_standby_settings
from graph.runtime.startup import connect_args
from migrations import head_revision, require_head, upgrade_to_head
from readmodels.inline import InlineProjections
from readmodels.leadership import AdvisoryLeadership
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.notifications.messages import Appended, Notifier
from readmodels.notifications.postgres import PostgresNotifier
from readmodels.projector import Projector
from readmodels.read_targets import ReadTargets
from readmodels.registry import all_projections

if TYPE_CHECKING:
    from graph.authn import Authenticator
    from graph.context import Services
    from graph.runtime.health import Operations
    from integration.relay import Relay


@dataclass(frozen=True)
class Core:
    engine: AsyncEngine
    store: EventStore
    notifier: Notifier
    projector: Projector | None
    relay: Relay | None  # the integration relay (NATS_URL); its status() is for operators
    reads: ReadTargets
    inline: InlineProjections


@contextlib.asynccontextmanager
async def running_core(
    settings: Settings, *, projector: bool, relay: bool | None = None
) -> AsyncIterator[Core]:
    """``relay``: run the integration relay here; by default wherever the projector runs,
    when NATS_URL is set."""
    inline_names = settings.inline_names(PROJECTION_NAMES)  # refuses an unknown name first
    engine = engine_for(settings)
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(engine.dispose)
        if settings.is_sqlite:
            await upgrade_to_head(engine)  # zero set-up for the embedded default
        else:
            await require_head(engine)  # production migrates deliberately
        store = EventStore(engine)
        if settings.tracing:
            from graph.runtime.tracing import TracedEventStore, instrument_engine

            instrument_engine(engine)
            store = TracedEventStore(engine)
        notifier: Notifier
        if settings.is_sqlite:
            notifier = InProcessNotifier()  # one process: nothing to cross
        else:
            notifier = await stack.enter_async_context(PostgresNotifier(settings.database_url))
        inline = InlineProjections(
            [p for p in all_projections() if p.name in inline_names], notifier
        )
        store.in_each_batch(inline)
        if not projector and not settings.is_sqlite:
            # No projector here to wake: announce our appends so the projector process
            # wakes at once rather than at its next poll. (A process with a projector
            # announces only while that projector stands by: see _wake_or_announce.)
            store.on_append(_wake_or_announce(None, notifier, inline))
        running: Projector | None = None
        if projector:
            # On PostgreSQL one projector process leads and the others stand by, blocked on
            # an advisory lock that the leader's death releases at once.
            leadership = None if settings.is_sqlite else AdvisoryLeadership(settings.database_url)
            running = Projector(
                engine,
                all_projections(),
                notifier,
                poll_interval=settings.poll_interval,
                leadership=leadership,
                retired_grace=settings.retired_grace_seconds,
            )
            store.on_append(_wake_or_announce(running, notifier, inline))
            await running.start(wake_on_announced_appends=not settings.is_sqlite)
            stack.push_async_callback(running.stop)
        relaying: Relay | None = None
        if settings.nats_url and (projector if relay is None else relay):
            relaying = build_relay(engine, notifier, settings)
            store.on_append(relaying.wake)
            await relaying.start(wake_on_announced_appends=not settings.is_sqlite)
            stack.push_async_callback(relaying.stop)
        standbys = []
        for url in settings.read_database_urls:
            standby = engine_for(settings, url=url)
            stack.push_async_callback(standby.dispose)
            where = standby.url
            standbys.append((f"{where.host}:{where.port or 5432}/{where.database}", standby))
        reads = ReadTargets(
            engine,
            standbys,
            notifier,
            PROJECTION_NAMES,
            primary_fallback=settings.read_primary_fallback,
            max_lag_seconds=settings.read_max_lag_seconds,
            check_interval=settings.read_check_interval,
            check_timeout=settings.db_connect_timeout,
        )
        if standbys:
            await warn_about_standby_settings(engine, standbys)
        await reads.start()
        stack.push_async_callback(reads.close)
        yield Core(engine, store, notifier, running, relaying, reads, inline)


@dataclass(frozen=True)
class Service:
    """What the GraphQL app serves with: the core, the resolvers' services, and what health
    checks read."""

    core: Core
    services: Services
    operations: Operations


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings, authenticator: Authenticator
) -> AsyncIterator[Service]:
    """The core with a projector when RUN_PROJECTOR says so, plus the command bus, the query
    handlers, the waiters and the orderChanged routing, with the metrics hooked in."""
    # Imported here, not at the top: the metrics module creates its multiprocess files on
    # import, and the processes that need only an engine or a core (the projector, the
    # preflight of ``serve --workers``) must not, nor pay for the GraphQL layer.
    from domain.bus import build_bus
    from graph.budgets import Budgets
    from graph.context import Services
    from graph.rate_limit import RateLimiter
    from graph.runtime import metrics
    from graph.runtime.health import Operations
    from readmodels.operations_bus import OperationsBus
    from readmodels.order_changes import OrderChanges
    from readmodels.queries import ReadModelQueries
    from readmodels.waiting import CheckpointWaiter

    async with running_core(settings, projector=settings.run_projector) as core:
        core.store.on_batch(metrics.observe_append_batch)
        core.reads.on_retry = metrics.READ_RETRIES.inc
        if isinstance(core.notifier, PostgresNotifier):
            core.notifier.on_reconnect = metrics.NOTIFIER_RECONNECTS.inc
        if core.projector is not None:
            core.projector.pass_observers.append(metrics.observe_projector_pass)
        core.inline.pass_observers.append(metrics.observe_projector_pass)
        if settings.tracing:
            from graph.runtime.tracing import traced_bus

            bus = traced_bus(core.store)
        else:
            bus = build_bus(core.store)
        queries = ReadModelQueries(core.engine)
        waiter = CheckpointWaiter(core.engine, core.notifier, PROJECTION_NAMES)
        order_changes = OrderChanges(queries, core.notifier, waiter, core.reads)
        services = Services(
            bus=bus,
            queries=queries,
            waiter=waiter,
            notifier=core.notifier,
            read_wait_seconds=settings.read_wait_seconds,
            authenticator=authenticator,
            mutation_limiter=RateLimiter(settings.mutation_rate, settings.mutation_burst),
            budgets=Budgets(
                max_subscriptions=settings.max_subscriptions,
                max_held_reads=settings.max_held_reads,
                max_wait_ahead=settings.max_wait_ahead,
            ),
            order_changes=order_changes,
            reads=core.reads,
            inline=frozenset(core.inline.projections),
            projection_ops=OperationsBus(
                engine=core.engine,
                projections=all_projections(),
                notifier=core.notifier,
                wake_builds=core.projector.wake_builds if core.projector else _nothing,
            ),
        )
        operations = Operations(
            engine=core.engine,
            notifier=core.notifier,
            schema_revision=await asyncio.to_thread(head_revision),
            runs_projector=core.projector is not None,
            stall_seconds=settings.stall_seconds,
            check_timeout=settings.db_connect_timeout,
            reads=core.reads,
        )
        await order_changes.start()
        try:
            yield Service(core, services, operations)
        finally:
            await order_changes.stop()


def _nothing() -> None:
    pass


def _wake_or_announce(
    projector: Projector | None, notifier: Notifier, inline: InlineProjections
) -> Callable[[int], None]:
    """After our appends: wake our projector if it leads, else tell the one that does;
    unless every projection took the appends inline, which leaves it nothing to do. (Other
    processes' relays wake on the inline projections' announcements.)"""
    all_inline = set(inline.projections) == set(PROJECTION_NAMES)

    def appended(head: int) -> None:
        if all_inline and not inline.left_behind:
            return
        if projector is not None and projector.leading:
            projector.wake(head)
        else:
            notifier.announce([Appended(head)])

    return appended


def build_relay(engine: AsyncEngine, notifier: Notifier, settings: Settings) -> Relay:
    """The relay, imported only when NATS_URL asks for it (nats-py is the ``nats`` extra)."""
    from integration.jetstream import JetStreamPublisher
    from integration.relay import Relay

    assert settings.nats_url is not None
    publisher = JetStreamPublisher(
        settings.nats_url, settings.nats_stream, settings.nats_subject_prefix
    )
    return Relay(engine, publisher, notifier, poll_interval=settings.poll_interval)


def engine_for(settings: Settings, *, url: str | None = None, **overrides: Any) -> AsyncEngine:
    """The engine of ``DATABASE_URL`` (or of ``url``, a read replica) with every setting that
    shapes it: pool, timeouts, SQLite's synchronous mode. ``overrides`` replaces keyword
    arguments of create_engine (a tool that needs a pool of its own size)."""
    args = connect_args(settings)
    # SQLite's own bound is its busy_timeout (domain/eventstore/engines.py).
    if not settings.is_sqlite:
        # asyncpg's command timeout; also what bounds a commit that waits for a synchronous
        # standby that is down: PostgreSQL's statement_timeout does not end that wait, a
        # client-side cancel does.
        args = {**args, "command_timeout": settings.db_timeout}
    options: dict[str, Any] = dict(
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        sqlite_synchronous=settings.sqlite_synchronous,
        connect_args=args,
        pool_timeout=settings.db_timeout,
        # How long a writer waits for another process's write lock before "locked" (a 503).
        sqlite_busy_seconds=settings.db_timeout,
    )
    return create_engine(url or settings.database_url, **{**options, **overrides})


def engine_for_url(database_url: str, **overrides: Any) -> AsyncEngine:
    """``engine_for`` with this process's settings but this DATABASE_URL: for tools (the
    benchmark) that pick their own throwaway databases."""
    return engine_for(Settings.from_env({**os.environ, "DATABASE_URL": database_url}), **overrides)
