"""A PostgreSQL primary with streaming standbys of the test's own (never the shared server).

Both run as the ``postgres`` OS user from PostgreSQL 15's binaries, on free ports, with their
sockets and data under one temporary directory that is removed at the end, also on failure.
They start in about 2 s. Skipped locally, failed under CI=true, when the binaries are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.private_postgres import PrivatePostgres, _create_database, new_root
from tests.support.serving import free_port


class Standby(PrivatePostgres):
    def __init__(self, root: Path, port: int, name: str) -> None:
        super().__init__(root, port)
        self.data = root / name
        self.name = name

    async def start(self) -> None:
        log = str(self.root / f"{self.name}.log")
        await self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "60", "start")

    async def replay_lsn(self) -> int:
        return int(await fetchval(self, "SELECT pg_last_wal_replay_lsn()"))

    async def promote(self) -> None:
        await self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")


class Primary(PrivatePostgres):
    def kill_9(self) -> None:
        """What a machine failure looks like to the clients: the server and every backend
        gone at once (an orphaned backend would otherwise finish what it was doing)."""
        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        children = [
            int(stat.parent.name)
            for stat in Path("/proc").glob("[0-9]*/stat")
            if _parent_of(stat) == pid
        ]
        for victim in (pid, *children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)


def _parent_of(stat: Path) -> int | None:
    try:
        # "pid (name) state ppid ...": the name may hold spaces, so split after its ")".
        return int(stat.read_text().rpartition(")")[2].split()[1])
    except (OSError, ValueError, IndexError):
        return None


async def fetchval(server: PrivatePostgres, query: str, *args: object) -> Any:
    conn = await asyncpg.connect(server.url, timeout=10)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


class ReplicaSet:
    def __init__(self, root: Path, primary: Primary, standbys: list[Standby]) -> None:
        self.root = root
        self.primary = primary
        self.standbys = standbys

    async def standby_setting(self, standby: Standby, name: str, value: str) -> None:
        """ALTER SYSTEM on the standby and reload (for settings a reload changes)."""
        conn = await asyncpg.connect(standby.url, timeout=10)
        try:
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    async def primary_settings(self, **settings: str) -> None:
        conn = await asyncpg.connect(self.primary.url, timeout=10)
        try:
            for name, value in settings.items():
                await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
            await conn.execute("SELECT pg_reload_conf()")
        finally:
            await conn.close()

    async def wait_streaming(self, *, sync: bool = False, within: float = 60.0) -> None:
        """Until the primary sees every standby streaming (and the first synchronous)."""
        names = {s.name for s in self.standbys if (s.data / "postmaster.pid").exists()}
        conn = await asyncpg.connect(self.primary.url, timeout=10)
        try:
            async with asyncio.timeout(within):
                while True:
                    rows = await conn.fetch(
                        "SELECT application_name, state, sync_state FROM pg_stat_replication"
                    )
                    streaming = {r["application_name"] for r in rows if r["state"] == "streaming"}
                    synced = {r["application_name"] for r in rows if r["sync_state"] == "sync"}
                    if names <= streaming and (not sync or synced):
                        return
                    await asyncio.sleep(0.05)  # the primary offers no event for this: poll
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def replica_set(
    standbys: int = 1, *, synchronous: str | None = None
) -> AsyncIterator[ReplicaSet]:
    """A migrated primary and ``standbys`` hot standbys streaming from it. ``synchronous``:
    the primary's ``synchronous_commit`` with ``synchronous_standby_names`` = the first
    standby."""
    root = new_root("ordergraph-replicas-")
    primary = Primary(root, free_port())
    started: list[PrivatePostgres] = []
    try:
        await primary.init()
        extra = {"wal_level": "replica", "max_wal_senders": "10", "max_replication_slots": "10"}
        with (primary.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in extra.items())
        await primary.start()
        started.append(primary)
        await _create_database(primary)
        pair = ReplicaSet(root, primary, [])
        for n in range(1, standbys + 1):
            standby = Standby(root, free_port(), f"standby{n}")
            await primary._run(
                "pg_basebackup",
                *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
                *("-D", str(standby.data), "-R", "-X", "stream", "-c", "fast"),
                *("-C", "-S", standby.name),
            )
            settings = {
                "port": str(standby.port),
                "cluster_name": f"'{standby.name}'",
                "hot_standby_feedback": "on",
            }
            with (standby.data / "postgresql.conf").open("a") as conf:
                conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
            await standby.start()
            started.append(standby)
            pair.standbys.append(standby)
        if synchronous is not None:
            # Only now: with a synchronous standby named before it exists, every commit
            # (CREATE DATABASE included) would wait for it.
            await pair.primary_settings(
                synchronous_commit=synchronous, synchronous_standby_names="standby1"
            )
        await pair.wait_streaming(sync=synchronous is not None)
        yield pair
    finally:
        for server in reversed(started):
            with contextlib.suppress(RuntimeError):
                await server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
