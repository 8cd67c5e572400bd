"""Mistakes with the database end in one line that names the place and what to check, with
an exit code scripts can rely on, never in a traceback or an endless wait."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from domain.eventstore.engines import create_engine
from graph.runtime.startup import DATABASE_NOT_READY, DATABASE_UNREACHABLE
from migrations import NotOurDatabase, refuse_foreign
from tests.conftest import ADMIN_URL, _admin
from tests.support.serving import free_port


async def run_cli(*args: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.runtime.cli",
        *args,
        env={**os.environ, "AUTH": "none", **env},  # about the database, not identity
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize("command", ["serve", "migrate", "project", "rebuild"])
async def test_a_closed_port_names_the_host_and_exits_3(command: str) -> None:
    port = free_port()
    args = [command, "--all"] if command == "rebuild" else [command]
    code, _, err = await run_cli(*args, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/x")
    assert code == DATABASE_UNREACHABLE
    line = one_line(err)
    assert line.startswith(
        f"ordergraph: cannot connect to PostgreSQL at 127.0.0.1:{port}, database x:"
    )
    assert "check that the server is running" in line


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_server_that_never_answers_is_given_up_on_in_time(silent_server: int) -> None:
    started = time.monotonic()
    code, _, err = await run_cli(
        "serve",
        DATABASE_URL=f"postgresql://postgres@127.0.0.1:{silent_server}/orders",
        DB_CONNECT_TIMEOUT="1",
    )
    assert time.monotonic() - started < 30  # asyncpg alone waits 60 s
    assert code == DATABASE_UNREACHABLE
    line = one_line(err)
    assert f"PostgreSQL at 127.0.0.1:{silent_server}, database orders: no answer within 1s" in line
    assert "DB_CONNECT_TIMEOUT" in line


async def test_a_missing_database_says_to_create_it(postgres_url: str) -> None:
    missing = make_url(postgres_url).set(database="no_such_db_here")
    code, _, err = await run_cli(
        "serve", DATABASE_URL=missing.render_as_string(hide_password=False)
    )
    assert code == DATABASE_UNREACHABLE
    line = one_line(err)
    assert 'database "no_such_db_here" does not exist' in line
    assert "create it, or fix the name in DATABASE_URL" in line


async def test_sqlite_in_a_missing_directory_says_so(tmp_path: Path) -> None:
    code, _, err = await run_cli("serve", DATABASE_URL=f"sqlite:///{tmp_path}/nowhere/x.db")
    assert code == DATABASE_UNREACHABLE
    assert "check that its directory exists and is writable" in one_line(err)


async def test_serve_refuses_an_unmigrated_database_in_one_line(
    empty_postgres_url: str,
) -> None:
    code, _, err = await run_cli("serve", DATABASE_URL=empty_postgres_url)
    assert code == DATABASE_NOT_READY
    assert "run `ordergraph migrate` with the same DATABASE_URL" in one_line(err)


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> Iterator[str]:
    name = f"ordergraph_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.db'}"
    url: str = request.getfixturevalue("empty_postgres_url")
    return url


async def _create_foreign_table(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE invoices (id INTEGER PRIMARY KEY)"))
    finally:
        await engine.dispose()


async def test_migrate_refuses_a_database_holding_foreign_tables_unless_forced(
    empty_url: str,
) -> None:
    await _create_foreign_table(empty_url)
    code, _, err = await run_cli("migrate", DATABASE_URL=empty_url)
    assert code == DATABASE_NOT_READY
    line = one_line(err)
    assert "already holds tables ordergraph did not create (invoices)" in line
    assert "--force migrates it anyway" in line

    code, out, _ = await run_cli("migrate", "--force", DATABASE_URL=empty_url)
    assert code == 0
    assert out.startswith("migrated ")
    # once ours, migrating again needs no force
    code, _, _ = await run_cli("migrate", DATABASE_URL=empty_url)
    assert code == 0


async def test_migrate_takes_an_empty_database(empty_url: str) -> None:
    code, out, err = await run_cli("migrate", DATABASE_URL=empty_url)
    assert (code, err) == (0, "")
    assert "migrated" in out


async def test_the_maintenance_database_is_refused(postgres_url: str) -> None:
    # Checked with the function itself: a failure here must not migrate the shared server.
    maintenance = make_url(ADMIN_URL).set(database="postgres")
    engine = create_engine(maintenance.render_as_string(hide_password=False))
    try:
        with pytest.raises(NotOurDatabase, match="maintenance database"):
            await refuse_foreign(engine)
    finally:
        await engine.dispose()
