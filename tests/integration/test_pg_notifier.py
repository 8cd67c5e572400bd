"""PostgresNotifier against a real PostgreSQL: two notifiers stand for two processes.

Uses conftest's ``postgres_url`` (a throwaway database; skipped locally, failed under CI=true,
when PostgreSQL is unreachable). LISTEN/NOTIFY needs no tables; each test uses its own channel.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.eventstore.engines import async_url, create_engine
from readmodels.notifications.messages import Appended, Notification, ProjectionUpdate
from readmodels.notifications.postgres import (
    PostgresNotifier,
    asyncpg_dsn,
    decode,
    decode_all,
    encode,
    encode_many,
)

TIMEOUT = 10.0
MARKER = "marker"


@pytest.fixture
def channel() -> str:
    return f"ordergraph_test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def process_a(postgres_url: str, channel: str) -> AsyncIterator[PostgresNotifier]:
    async with PostgresNotifier(postgres_url, channel) as notifier:
        yield notifier


@pytest.fixture
async def process_b(postgres_url: str, channel: str) -> AsyncIterator[PostgresNotifier]:
    # SQLAlchemy-style URL on purpose: the notifier must accept both spellings.
    async with PostgresNotifier(async_url(postgres_url), channel) as notifier:
        yield notifier


@pytest.fixture
async def pg_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(postgres_url)
    yield engine
    await engine.dispose()


async def next_update(updates: AsyncIterator[Notification]) -> Notification:
    async with asyncio.timeout(TIMEOUT):
        return await anext(updates)


async def updates_until_marker(
    updates: AsyncIterator[Notification], marker_position: int
) -> list[Notification]:
    """Everything received up to the marker. NOTIFYs reach a listener in commit order, so
    once a marker committed later has arrived, an earlier-committed update would have too."""
    seen: list[Notification] = []
    while (update := await next_update(updates)) != ProjectionUpdate(MARKER, marker_position):
        seen.append(update)
    return seen


async def test_update_published_in_one_process_reaches_another(
    process_a: PostgresNotifier, process_b: PostgresNotifier
) -> None:
    async with process_b.subscribe() as updates:
        await process_a.publish(ProjectionUpdate("order_views", 7))
        assert await next_update(updates) == ProjectionUpdate("order_views", 7)


async def test_several_updates_published_together_all_arrive(
    process_a: PostgresNotifier, process_b: PostgresNotifier
) -> None:
    together = [ProjectionUpdate(name, 9) for name in ("order_views", "daily_sales")]
    async with process_b.subscribe() as updates:
        await process_a.publish_many([*together, ProjectionUpdate("customer_summaries", 8)])
        await process_a.publish(ProjectionUpdate(MARKER, 1))
        received = await updates_until_marker(updates, 1)
    assert sorted(received, key=repr) == [
        ProjectionUpdate("customer_summaries", 8),
        *sorted(together, key=repr),
    ]


async def test_an_append_announced_in_one_process_reaches_another_as_an_append(
    process_a: PostgresNotifier, process_b: PostgresNotifier
) -> None:
    async with process_b.subscribe() as updates:
        await process_a.publish(Appended(41))
        await process_a.publish(ProjectionUpdate(MARKER, 1))
        received = await updates_until_marker(updates, 1)
    # Its own type, never a projection: no subscriber can mistake it for a checkpoint.
    assert received == [Appended(41)]


async def test_an_announcement_is_here_at_once_and_reaches_another_process(
    process_a: PostgresNotifier, process_b: PostgresNotifier
) -> None:
    async with process_a.subscribe() as here, process_b.subscribe() as there:
        process_a.announce([ProjectionUpdate("order_views", 5), Appended(5)])
        process_a.announce([ProjectionUpdate("order_views", 6), Appended(6)])
        # Here before announce returned, with no await in between: nothing to wait for.
        assert process_a.reached("order_views") == 6
        assert {await next_update(here) for _ in range(2)} == {
            ProjectionUpdate("order_views", 6),
            Appended(6),
        }
        # There, the latest of each kind arrives; what was announced meanwhile may be folded.
        latest = {ProjectionUpdate("order_views", 6), Appended(6)}
        received: set[Notification] = set()
        while not latest <= received:
            received.add(await next_update(there))
    assert process_b.reached("order_views") == 6


async def test_own_publish_is_delivered_once(
    process_a: PostgresNotifier, process_b: PostgresNotifier
) -> None:
    async with process_b.subscribe() as updates:
        await process_b.publish(ProjectionUpdate("order_views", 1))
        assert await next_update(updates) == ProjectionUpdate("order_views", 1)
        # If B's own NOTIFY echoed back through its LISTEN, it would arrive before this marker.
        await process_a.publish(ProjectionUpdate(MARKER, 1))
        assert await updates_until_marker(updates, 1) == []


async def test_notify_in_a_transaction_is_delivered_only_after_commit(
    process_a: PostgresNotifier, process_b: PostgresNotifier, pg_engine: AsyncEngine
) -> None:
    update = ProjectionUpdate("daily_sales", 42)
    async with process_b.subscribe() as updates:
        async with pg_engine.begin() as conn:
            await conn.execute(process_a.notify_statement(update))
            await process_a.publish(ProjectionUpdate(MARKER, 1))
            assert await updates_until_marker(updates, 1) == []
        assert await next_update(updates) == update


async def test_notify_in_a_rolled_back_transaction_is_never_delivered(
    process_a: PostgresNotifier, process_b: PostgresNotifier, pg_engine: AsyncEngine
) -> None:
    async with process_b.subscribe() as updates:
        async with pg_engine.connect() as conn:
            await conn.execute(process_a.notify_statement(ProjectionUpdate("daily_sales", 42)))
            await conn.rollback()
        await process_a.publish(ProjectionUpdate(MARKER, 1))
        assert await updates_until_marker(updates, 1) == []


async def test_leaving_a_subscription_frees_it(process_b: PostgresNotifier) -> None:
    assert process_b.subscriber_count == 0
    async with process_b.subscribe(), process_b.subscribe():
        assert process_b.subscriber_count == 2
    assert process_b.subscriber_count == 0


async def test_malformed_payloads_are_ignored(
    process_a: PostgresNotifier, process_b: PostgresNotifier, postgres_url: str
) -> None:
    async with process_b.subscribe() as updates:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute("SELECT pg_notify($1, 'no position here')", process_b.channel)
        finally:
            await conn.close()
        await process_a.publish(ProjectionUpdate(MARKER, 1))
        assert await updates_until_marker(updates, 1) == []


async def test_listener_reconnects_after_its_connection_is_killed(
    process_a: PostgresNotifier,
    process_b: PostgresNotifier,
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="ordergraph.notifier")
    admin = await asyncpg.connect(postgres_url)
    try:
        # Kill every LISTEN connection on the channel; A's publisher connection only NOTIFYs.
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query = $1",
            f'LISTEN "{process_b.channel}"',
        )
    finally:
        await admin.close()
    assert killed == 2
    async with asyncio.timeout(TIMEOUT):
        await process_b.listening(generation=2)
        await process_a.listening(generation=2)
    assert "lost the LISTEN connection" in caplog.text
    async with process_b.subscribe() as updates:
        await process_a.publish(ProjectionUpdate("order_views", 3))
        assert await next_update(updates) == ProjectionUpdate("order_views", 3)


async def test_start_fails_fast_when_postgres_is_unreachable() -> None:
    notifier = PostgresNotifier("postgresql://postgres@127.0.0.1:9/nowhere")
    with pytest.raises(ConnectionRefusedError):
        await notifier.start()
    await notifier.close()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgresql+asyncpg://u:p@h/db?ssl=require", "postgresql://u:p@h/db?ssl=require"),
        ("postgres+asyncpg://u@h/db", "postgres://u@h/db"),
        # A multi-host URL (fail-over) in SQLAlchemy's spelling, in asyncpg's.
        (
            "postgresql://u@/db?host=a:5432&host=b:5433&target_session_attrs=read-write",
            "postgresql://u@a:5432,b:5433/db?target_session_attrs=read-write",
        ),
    ],
)
def test_sqlalchemy_urls_are_accepted(url: str, expected: str) -> None:
    assert asyncpg_dsn(url) == expected


def test_payload_round_trip() -> None:
    update = ProjectionUpdate("customer_summaries", 123456789)
    assert decode(encode(update)) == update
    assert decode_all(encode_many(["a", "b"], 7)) == [
        ProjectionUpdate("a", 7),
        ProjectionUpdate("b", 7),
    ]
    assert decode_all(encode(Appended(99))) == [Appended(99)]
    with pytest.raises(ValueError, match="not a notification"):
        decode("12")


class SilentableProxy:
    """A TCP proxy to PostgreSQL that can go silent: nothing passes, nothing is closed, as
    on a network that drops packets."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.flowing = asyncio.Event()
        self.flowing.set()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                await self.flowing.wait()
                sink.write(data)
                await sink.drain()
            sink.close()

        await asyncio.gather(
            pump(reader, upstream_writer), pump(upstream_reader, writer), return_exceptions=True
        )

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def test_a_publish_on_a_connection_gone_silent_gives_up_in_bounded_time(
    postgres_url: str, channel: str
) -> None:
    """The projector awaits each publish after its commit: a publisher connection that goes
    silent must fail the publish in bounded time, not hold every projection forever."""
    url = make_url(postgres_url)
    proxy = SilentableProxy(url.host or "127.0.0.1", url.port or 5432)
    port = await proxy.start()
    dsn = url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)
    notifier = PostgresNotifier(dsn, channel, publish_timeout=0.5)
    try:
        await notifier.start()
        await notifier.publish(ProjectionUpdate("order_views", 1))  # the publisher connects
        proxy.flowing.clear()
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(notifier.publish(ProjectionUpdate("order_views", 2)), 30)
        assert asyncio.get_running_loop().time() - started < 5
        proxy.flowing.set()
        await notifier.publish(ProjectionUpdate("order_views", 3))  # a fresh connection
    finally:
        proxy.flowing.set()
        await notifier.close()
        proxy.close()
