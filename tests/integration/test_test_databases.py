"""The PostgreSQL half of the suite sets itself up on a fresh server (nothing but the
``postgres`` database), and when it cannot, its skip message says the real cause."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import asyncpg
import pytest

from tests.conftest import _admin, create_migrated_database, database_problem
from tests.support.private_postgres import private_cluster
from tests.support.serving import free_port


@pytest.fixture(scope="module")
def fresh_server() -> Iterator[str]:
    """A brand-new PostgreSQL server of our own: nothing on it but ``postgres``."""
    with private_cluster() as server:
        yield server.server_url


def test_a_fresh_server_gets_its_test_database_made(fresh_server: str) -> None:
    # The old default named a database "test", which a fresh server does not have.
    url = asyncio.run(create_migrated_database("ordergraph_fresh", f"{fresh_server}/test"))
    assert url == f"{fresh_server}/ordergraph_fresh"

    async def tables() -> set[str]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await conn.close()
        return {row["tablename"] for row in rows}

    assert {"events", "commands", "projection_checkpoints", "alembic_version"} <= asyncio.run(
        tables()
    )
    asyncio.run(_admin('DROP DATABASE "ordergraph_fresh" WITH (FORCE)', f"{fresh_server}/test"))


def test_the_skip_message_names_the_real_cause() -> None:
    port = free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    with pytest.raises(OSError, match="Connect call failed") as refused:
        asyncio.run(create_migrated_database("never", url))
    message = database_problem(url, refused.value)
    assert message.startswith(
        f"PostgreSQL tests need a server where they can create a database: at "
        f"postgresql://postgres@127.0.0.1:{port} no PostgreSQL server answers there"
    )
    assert "ORDERGRAPH_TEST_POSTGRES" in message


def test_a_user_without_createdb_is_told_so(fresh_server: str) -> None:
    async def make_user() -> None:
        conn = await asyncpg.connect(f"{fresh_server}/postgres")
        try:
            await conn.execute("CREATE ROLE plain LOGIN")
        finally:
            await conn.close()

    asyncio.run(make_user())
    url = fresh_server.replace("postgres@", "plain@") + "/postgres"
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        asyncio.run(create_migrated_database("never", url))
    assert "the user may not create databases (it needs CREATEDB)" in database_problem(
        url, refused.value
    )
