"""The composition root shared by ``ordergraph serve`` and ``ordergraph project``: engine,
event store, notifier and (optionally) projector, built and torn down in one place."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.engines import create_engine
from domain.eventstore.store import EventStore
from graph.runtime.settings import Settings
from graph.runtime.standby_checks import warn_about_standby_settings
from graph.runtime.startup import connect_args
from migrations import require_head, upgrade_to_head
from readmodels.leadership import AdvisoryLeadership
from readmodels.notifications.inprocess import AppendAnnouncer, InProcessNotifier, Notifier
from readmodels.notifications.postgres import PostgresNotifier
from readmodels.projector import Projector
from readmodels.read_targets import ReadTargets
from readmodels.registry import PROJECTION_NAMES, all_projections

if TYPE_CHECKING:
    from integration.relay import Relay


@dataclass(frozen=True)
class Core:
    engine: AsyncEngine
    store: EventStore
    notifier: Notifier
    projector: Projector | None
    relay: Relay | None  # the integration relay (NATS_URL); its status() is for operators
    reads: ReadTargets


@contextlib.asynccontextmanager
async def running_core(
    settings: Settings, *, projector: bool, relay: bool | None = None
) -> AsyncIterator[Core]:
    """``relay``: run the integration relay here; by default wherever the projector runs,
    when NATS_URL is set."""
    args = connect_args(settings)
    if (
        not settings.is_sqlite
    ):  # SQLite's own bound is its busy_timeout (domain/eventstore/engines.py)
        # Also what bounds a commit that waits for a synchronous standby that is down:
        # PostgreSQL's statement_timeout does not end that wait, a client-side cancel does.
        args = {**args, "command_timeout": settings.db_timeout}
    engine = create_engine(
        settings.database_url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        sqlite_synchronous=settings.sqlite_synchronous,
        connect_args=args,
        pool_timeout=settings.db_timeout,
        # How long a writer waits for another process's write lock before "locked" (a 503).
        sqlite_busy_seconds=settings.db_timeout,
    )
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
            if not projector:
                # No projector here to wake: announce our appends so the projector process
                # wakes at once rather than at its next poll. (A process with a projector
                # announces only while that projector stands by: see _wake_or_announce.)
                store.on_append(AppendAnnouncer(notifier))
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
            store.on_append(_wake_or_announce(running, AppendAnnouncer(notifier)))
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
            standby = create_engine(
                url,
                pool_size=settings.pool_size,
                max_overflow=settings.pool_size,
                connect_args=args,
                pool_timeout=settings.db_timeout,
            )
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
        yield Core(engine, store, notifier, running, relaying, reads)


def _wake_or_announce(projector: Projector, announcer: AppendAnnouncer) -> Callable[[int], None]:
    """After our appends: wake our projector if it leads, else tell the one that does."""

    def appended(head: int) -> None:
        if projector.leading:
            projector.wake(head)
        else:
            announcer(head)

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
