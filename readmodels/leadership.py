"""One projector at a time across processes, handed over the moment its holder dies.

The leader holds a PostgreSQL session-level advisory lock on a dedicated connection; every
other projector process waits inside ``pg_advisory_lock`` on its own connection. When the
leader's process dies, its session ends, PostgreSQL releases the lock, and one waiter's call
returns: take-over costs a round trip, not a poll interval. This is only about liveness:
exactly-once still rests on the checkpoint rows each batch locks, so a leader that lost its
session without noticing can at worst duplicate effort, never a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import asyncpg

from readmodels.notifications.postgres import asyncpg_dsn

log = logging.getLogger("ordergraph.projector")

PROJECTOR_LOCK = 0x6F72_6467_7261_7068  # "ordgraph": one key per database (advisory locks are)
_CONNECT_TIMEOUT = 10.0
_MAX_BACKOFF = 5.0
_CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


class AdvisoryLeadership:
    def __init__(
        self, dsn: str, key: int = PROJECTOR_LOCK, *, health_check_interval: float = 5.0
    ) -> None:
        self.dsn = asyncpg_dsn(dsn)
        self.key = key
        self.health_check_interval = health_check_interval
        self._connection: Any = None  # asyncpg.Connection holding the lock
        self._watch: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def acquire(self) -> None:
        """Return once this process holds the lock (waiting as long as another does)."""
        delay = 0.1
        while not self.held:
            try:
                await self._try_acquire()
            except _CONNECTION_ERRORS as error:
                if delay == 0.1:  # once per outage, not once per retry
                    log.warning("projector leadership: cannot reach PostgreSQL: %r", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_BACKOFF)
        log.info("projector leadership acquired (pid %d)", os.getpid())

    async def _try_acquire(self) -> None:
        connection = await asyncpg.connect(
            self.dsn,
            timeout=_CONNECT_TIMEOUT,
            # Lets operators (and tests) see which process leads: pg_stat_activity.
            server_settings={"application_name": f"ordergraph-projector-{os.getpid()}"},
        )
        try:
            await connection.execute("SELECT pg_advisory_lock($1)", self.key)
        except BaseException:
            connection.terminate()  # cancelled or failed: never leave a pending request
            raise
        connection.add_termination_listener(_on_lost)
        self._connection = connection
        self._watch = asyncio.create_task(self._watch_health(connection))

    async def _watch_health(self, connection: Any) -> None:
        """A silently dead socket shows only when used: look regularly, and give the lead
        up (so that ``held`` says so) the moment the session is gone."""
        while not connection.is_closed():
            await asyncio.sleep(self.health_check_interval)
            try:
                await connection.fetchval("SELECT 1", timeout=_CONNECT_TIMEOUT)
            except _CONNECTION_ERRORS:
                connection.terminate()

    async def release(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.remove_termination_listener(_on_lost)  # given up, not lost
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await connection.close(timeout=_CONNECT_TIMEOUT)


def _on_lost(_connection: Any) -> None:
    log.warning("projector leadership lost: its session is gone; waiting to lead again")
