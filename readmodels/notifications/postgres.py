"""Projection notifications across processes through PostgreSQL LISTEN/NOTIFY.

Each process holds one dedicated asyncpg connection that LISTENs (never a SQLAlchemy pooled
connection: a LISTEN stays on a connection returned to the pool and can starve it) and hands
what arrives to an ``InProcessNotifier`` for local fan-out. Payloads are "projection:position"
(``$appended:position`` for an ``Appended``), far below PostgreSQL's 8000-byte limit.

Prefer ``notify_statement`` inside the transaction that advances the checkpoint: PostgreSQL
delivers a NOTIFY only when (and if) its transaction commits, so nobody hears of a position
that is not yet readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

import asyncpg
import sqlalchemy as sa

from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.notifications.messages import Appended, Notification, ProjectionUpdate, Resync

logger = logging.getLogger("ordergraph.notifier")

DEFAULT_CHANNEL = "ordergraph_projections"
_CONNECT_TIMEOUT = 10.0
_MAX_BACKOFF = 5.0
_CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def asyncpg_dsn(url: str) -> str:
    """``postgresql+asyncpg://...`` (SQLAlchemy style) -> ``postgresql://...`` (libpq style).

    SQLAlchemy spells several hosts ``?host=a:5432&host=b:5432`` (a multi-host DATABASE_URL
    for fail-over); asyncpg's DSN keeps only the last ``host`` of a query string but takes
    ``a:5432,b:5432`` in the host part, so they move there."""
    url = re.sub(r"^(postgres(?:ql)?)\+\w+://", r"\1://", url)
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    hosts = [value for key, value in query if key == "host"]
    if len(hosts) < 2 or parts.hostname:
        return url
    netloc = parts.netloc + ",".join(hosts)  # the user part (``user@``) stays first
    rest = urllib.parse.urlencode([(k, v) for k, v in query if k != "host"])
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, rest, parts.fragment))


# On the wire only: the name an ``Appended`` travels under ("$" starts no projection's name).
_APPENDED = "$appended"

Crossing = ProjectionUpdate | Appended  # a Resync is local to each process: it never crosses


def encode(update: Crossing) -> str:
    name = update.projection if isinstance(update, ProjectionUpdate) else _APPENDED
    return f"{name}:{update.position}"


def decode(payload: str) -> Crossing:
    name, _, position = payload.rpartition(":")
    if not name:
        raise ValueError(f"not a notification: {payload!r}")
    return Appended(int(position)) if name == _APPENDED else ProjectionUpdate(name, int(position))


def encode_many(projections: Sequence[str], position: int) -> str:
    """Several projections at one position in one payload: "a,b,c:42"."""
    return f"{','.join(projections)}:{position}"


def decode_all(payload: str) -> list[Crossing]:
    first = decode(payload)
    if isinstance(first, Appended):
        return [first]
    return [ProjectionUpdate(name, first.position) for name in first.projection.split(",")]


def notify_statement(update: ProjectionUpdate, *, channel: str = DEFAULT_CHANNEL) -> sa.TextClause:
    """A statement to run in your own transaction: ``await conn.execute(notify_statement(u))``."""
    return sa.text("SELECT pg_notify(:channel, :payload)").bindparams(
        channel=channel, payload=encode(update)
    )


def _payloads(updates: Iterable[Crossing]) -> list[str]:
    """One payload per position for the projection updates, one per ``Appended``."""
    by_position: dict[int, list[str]] = {}
    payloads = []
    for update in updates:
        if isinstance(update, ProjectionUpdate):
            by_position.setdefault(update.position, []).append(update.projection)
        else:
            payloads.append(encode(update))
    return payloads + [encode_many(names, at) for at, names in by_position.items()]


class PostgresNotifier:
    """The ``Notifier`` protocol over LISTEN/NOTIFY. ``start()`` before use, ``close()`` after
    (or ``async with``)."""

    def __init__(
        self,
        dsn: str,
        channel: str = DEFAULT_CHANNEL,
        *,
        health_check_interval: float = 30.0,
        publish_timeout: float = 5.0,
    ) -> None:
        self.dsn = asyncpg_dsn(dsn)
        self.channel = channel
        self.health_check_interval = health_check_interval
        # The projector awaits each publish after its commit: a connection that goes silent
        # (no reset, no answer) must not stop every projection with it.
        self.publish_timeout = publish_timeout
        self._local = InProcessNotifier()
        self._listener: Any = None  # asyncpg.Connection; asyncpg ships no type hints
        self._publisher: Any = None
        self._publisher_pid: int | None = None
        self._publish_lock = asyncio.Lock()
        self._unsent: dict[object, Crossing] = {}  # announced here, not yet NOTIFYed
        self._sender: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()
        self._closing = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._generation = 0
        self._generation_changed = asyncio.Condition()
        self.on_reconnect: Callable[[], None] | None = None  # after each re-established LISTEN

    @property
    def subscriber_count(self) -> int:
        return self._local.subscriber_count

    @property
    def connected(self) -> bool:
        """Holding a LISTEN connection now (readiness)."""
        listener = self._listener
        return listener is not None and not listener.is_closed() and not self._lost.is_set()

    @property
    def listen_generation(self) -> int:
        """How many times a LISTEN has been established (1 after start, +1 per reconnect)."""
        return self._generation

    async def listening(self, generation: int = 1) -> None:
        """Wait until the ``generation``-th LISTEN is established."""
        async with self._generation_changed:
            await self._generation_changed.wait_for(lambda: self._generation >= generation)

    async def start(self) -> None:
        """Connect and LISTEN; raises if PostgreSQL is unreachable now (fail fast at boot)."""
        await self._listen()
        self._supervisor = asyncio.create_task(self._supervise(), name="pg-notifier-supervisor")

    async def close(self) -> None:
        self._closing.set()
        for task in (self._supervisor, self._sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for connection in (self._listener, self._publisher):
            if connection is not None:
                with contextlib.suppress(*_CONNECTION_ERRORS):
                    await connection.close(timeout=_CONNECT_TIMEOUT)
        self._listener = self._publisher = None

    async def __aenter__(self) -> PostgresNotifier:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def subscribe(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Notification]]:
        return self._local.subscribe()

    def reached(self, projection: str) -> int:
        return self._local.reached(projection)

    def notify_statement(self, update: ProjectionUpdate) -> sa.TextClause:
        return notify_statement(update, channel=self.channel)

    async def publish(self, update: Notification) -> None:
        """Deliver to this process's subscribers directly, and NOTIFY the others (autocommit)."""
        if isinstance(update, Resync):
            self._local.deliver(update)  # it never crosses: each process resyncs alone
        else:
            await self._send([update], _payloads([update]))

    async def publish_many(self, updates: Sequence[ProjectionUpdate]) -> None:
        """As ``publish``, with one NOTIFY for all the updates that share a position."""
        await self._send(updates, _payloads(updates))

    def announce(self, updates: Sequence[Crossing]) -> None:
        for update in updates:
            self._local.deliver(update)
            key = update.projection if isinstance(update, ProjectionUpdate) else _APPENDED
            held = self._unsent.get(key)
            if held is None or update.position > held.position:
                self._unsent[key] = update
        if self._sender is None and not self._closing.is_set():
            self._sender = asyncio.create_task(self._send_announced(), name="pg-notifier-send")

    async def _send_announced(self) -> None:
        try:
            while self._unsent:
                unsent, self._unsent = self._unsent, {}
                try:
                    await self._notify_elsewhere(_payloads(unsent.values()))
                except Exception as error:
                    logger.warning("could not announce %s: %r", list(unsent.values()), error)
        finally:
            self._sender = None

    async def _send(self, updates: Sequence[Crossing], payloads: Sequence[str]) -> None:
        # This process's subscribers first: they should not wait for a round trip through
        # PostgreSQL under load (read-your-writes latency), and our own NOTIFY is skipped
        # when it comes back (see _on_notification).
        for update in updates:
            self._local.deliver(update)
        await self._notify_elsewhere(payloads)

    async def _notify_elsewhere(self, payloads: Sequence[str]) -> None:
        async with self._publish_lock:
            try:
                async with asyncio.timeout(self.publish_timeout):
                    await self._notify(payloads)
            except _CONNECTION_ERRORS:
                # One retry on a fresh connection: the old one may have been dropped while
                # idle, or have gone silent.
                await self._drop_publisher()
                async with asyncio.timeout(self.publish_timeout):
                    await self._notify(payloads)

    async def _notify(self, payloads: Sequence[str]) -> None:
        if self._publisher is None or self._publisher.is_closed():
            self._publisher = await asyncpg.connect(self.dsn, timeout=_CONNECT_TIMEOUT)
            self._publisher_pid = self._publisher.get_server_pid()
        for payload in payloads:
            await self._publisher.execute("SELECT pg_notify($1, $2)", self.channel, payload)

    async def _drop_publisher(self) -> None:
        publisher, self._publisher, self._publisher_pid = self._publisher, None, None
        if publisher is not None:
            publisher.terminate()

    async def _listen(self) -> None:
        connection = await asyncpg.connect(self.dsn, timeout=_CONNECT_TIMEOUT)
        try:
            connection.add_termination_listener(self._on_terminated)
            await connection.add_listener(self.channel, self._on_notification)
        except BaseException:
            connection.terminate()
            raise
        self._listener = connection
        self._lost.clear()
        async with self._generation_changed:
            self._generation += 1
            self._generation_changed.notify_all()

    def _on_notification(self, _connection: Any, pid: int, _channel: str, payload: str) -> None:
        if pid == self._publisher_pid:
            return  # our own publish(), already delivered locally
        try:
            updates = decode_all(payload)
        except ValueError:
            logger.warning("ignoring malformed notification %r on %s", payload, self.channel)
            return
        for update in updates:
            self._local.deliver(update)

    def _on_terminated(self, connection: Any) -> None:
        # Ignore the old connection we terminate ourselves while reconnecting or closing.
        if connection is self._listener and not self._closing.is_set():
            self._lost.set()

    async def _supervise(self) -> None:
        while not self._closing.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self.health_check_interval)
            if not self._lost.is_set() and await self._healthy():
                continue
            logger.warning("lost the LISTEN connection on %s; reconnecting", self.channel)
            await self._reconnect()

    async def _healthy(self) -> bool:
        """A silently dead socket (no RST) only shows when we use it."""
        if self._listener is None:
            return False
        try:
            await self._listener.fetchval("SELECT 1", timeout=_CONNECT_TIMEOUT)
        except _CONNECTION_ERRORS:
            return False
        return True

    async def _reconnect(self) -> None:
        old, self._listener = self._listener, None
        if old is not None:
            old.terminate()
        delay = 0.1
        while not self._closing.is_set():
            try:
                await self._listen()
            except _CONNECTION_ERRORS as error:
                logger.warning("reconnecting LISTEN on %s failed: %r", self.channel, error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            # NOTIFYs sent while we were away are gone and are not replayed. Subscribers wait
            # on positions, so telling them to re-read the checkpoints (now that anything
            # committed from here on will be heard) makes up for whatever was lost.
            logger.info("LISTEN on %s re-established", self.channel)
            self._local.deliver(Resync(self._generation))
            if self.on_reconnect is not None:
                self.on_reconnect()
            return
