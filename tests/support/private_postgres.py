"""A PostgreSQL server of the test's own, for tests that stop or restart the database.

The shared server (conftest's) is never stopped: a test that needs the database to go away
initdb's a cluster in a temporary directory, on a free port and a private socket directory,
runs it as the ``postgres`` OS user when the tests run as root (PostgreSQL refuses to run as
root), and removes it afterwards. Skipped locally, failed under CI=true, when the binaries are
missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from domain.eventstore.engines import create_engine
from migrations import upgrade_to_head
from tests.support.serving import free_port

PG_BIN = Path(os.environ.get("ORDERGRAPH_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
DATABASE = "ordergraph"


class PrivatePostgres:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port

    @property
    def server_url(self) -> str:
        """postgresql://postgres@127.0.0.1:PORT, with no database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"{self.server_url}/postgres"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    async def init(self) -> None:
        await self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",  # a throwaway cluster: durability across power loss is not tested
            "max_connections": "200",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    async def start(self) -> None:
        log = str(self.root / "server.log")
        await self._run("pg_ctl", "-D", str(self.data), "-l", log, "-w", "-t", "60", "start")

    async def stop(self, mode: str = "fast") -> None:
        await self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    async def _run(self, program: str, *args: str) -> None:
        command = [str(PG_BIN / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{program} failed ({process.returncode}): {output.decode()}")


@contextlib.asynccontextmanager
async def private_postgres() -> AsyncIterator[PrivatePostgres]:
    """A running, migrated server of our own; stopped and deleted on exit."""
    server = _new_server()
    try:
        await server.init()
        await server.start()
        await _create_database(server)
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            await server.stop("immediate")
        shutil.rmtree(server.root, ignore_errors=True)


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivatePostgres]:
    """For code without an event loop: a running server of our own with nothing on it but
    the ``postgres`` database (a fresh cluster, as a new installation has)."""
    server = _new_server()
    try:
        asyncio.run(server.init())
        asyncio.run(server.start())
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            asyncio.run(server.stop("immediate"))
        shutil.rmtree(server.root, ignore_errors=True)


def _new_server() -> PrivatePostgres:
    return PrivatePostgres(new_root("ordergraph-pg-"), free_port())


def new_root(prefix: str) -> Path:
    """A directory for servers of our own, owned by ``postgres``; skipped locally, failed
    under CI=true, when the PostgreSQL binaries are missing."""
    if not (PG_BIN / "initdb").exists():
        message = f"no PostgreSQL binaries in {PG_BIN}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    root = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    return root


async def _create_database(server: PrivatePostgres) -> None:
    import asyncpg

    conn = await asyncpg.connect(server.admin_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()
    engine = create_engine(server.url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
