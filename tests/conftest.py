"""Fixtures that run every database test on SQLite and on PostgreSQL.

PostgreSQL: one throwaway database per test session, created on the server named by
ORDERGRAPH_TEST_POSTGRES (default: the local server, user postgres) and dropped at the end.
It is created from the database that URL names, or from the server's ``postgres`` maintenance
database when that one does not exist, so a fresh server needs nothing made by hand; the user
needs the CREATEDB privilege. Each test starts from empty tables. When no database can be
made the PostgreSQL tests skip locally, saying why, and fail under CI (CI=true), so CI can
never go green without them.
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import CommandBus, build_bus
from domain.eventstore.engines import create_engine
from domain.eventstore.store import EventStore
from domain.eventstore.tables import metadata
from migrations import upgrade_to_head
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.projector import Projector
from readmodels.queries import ReadModelQueries
from readmodels.registry import all_projections
from readmodels.waiting import CheckpointWaiter
from tests.support.jetstream import jetstream  # noqa: F401 - the relay tests' JetStream fixture

ADMIN_URL = os.environ.get(
    "ORDERGRAPH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ["sqlite", "postgresql"]


async def admin_connect(url: str) -> asyncpg.Connection:
    """A connection for CREATE/DROP DATABASE: to the database ``url`` names, or to the
    server's ``postgres`` maintenance database if that one does not exist (a fresh server)."""
    try:
        return await asyncpg.connect(url, timeout=5)
    except asyncpg.InvalidCatalogNameError:
        maintenance = make_url(url).set(database="postgres")
        return await asyncpg.connect(maintenance.render_as_string(hide_password=False), timeout=5)


async def _admin(statement: str, url: str = ADMIN_URL) -> None:
    conn = await admin_connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def create_migrated_database(name: str, admin_url: str = ADMIN_URL) -> str:
    await _admin(f'CREATE DATABASE "{name}"', admin_url)
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = create_engine(url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()
    return url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name = f"ordergraph_test_{uuid.uuid4().hex[:12]}"
    try:
        url = asyncio.run(create_migrated_database(name))
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        message = database_problem(ADMIN_URL, error)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    yield url
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def database_problem(url: str, error: BaseException) -> str:
    """Why no test database could be made, as the skip (or CI failure) says it."""
    server = make_url(url).render_as_string(hide_password=True).rsplit("/", 1)[0]
    if isinstance(error, OSError | TimeoutError):
        cause = "no PostgreSQL server answers there"
    elif isinstance(error, asyncpg.InsufficientPrivilegeError):
        cause = "the user may not create databases (it needs CREATEDB)"
    elif isinstance(
        error, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError
    ):
        cause = "the server refused the user or password"
    else:
        cause = "creating or migrating the test database failed"
    return (
        f"PostgreSQL tests need a server where they can create a database: at {server} "
        f"{cause} ({type(error).__name__}: {error}); set ORDERGRAPH_TEST_POSTGRES to "
        "postgresql://user@host:port/db of another"
    )


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'ordergraph.db'}"
    return str(request.getfixturevalue("postgres_url"))


async def _empty_all_tables(engine: AsyncEngine) -> None:
    """Empty every table; drop the tables of later projection versions a test made, and
    make again the version-1 tables a test's clean-up dropped."""
    async with engine.begin() as conn:
        names = list(
            await conn.scalars(
                sa.text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename <> 'alembic_version'"
                )
            )
        )
        for name in [n for n in names if re.search(r"_v[0-9]+$", n)]:
            await conn.execute(sa.text(f'DROP TABLE "{name}"'))
        await conn.run_sync(lambda sync: metadata.create_all(sync, checkfirst=True))
        names = list(
            await conn.scalars(
                sa.text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                    " AND tablename <> 'alembic_version'"
                )
            )
        )
        await conn.execute(sa.text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY"))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=25, max_overflow=10)
    if engine.dialect.name == "sqlite":
        await upgrade_to_head(engine)
    else:
        await _empty_all_tables(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> EventStore:
    return EventStore(engine)


@pytest.fixture
def bus(store: EventStore) -> CommandBus:
    return build_bus(store)


@pytest.fixture
def notifier() -> InProcessNotifier:
    return InProcessNotifier()


@pytest.fixture
def projector(engine: AsyncEngine, notifier: InProcessNotifier) -> Projector:
    return Projector(engine, all_projections(), notifier, batch_size=50, max_backoff=0.2)


@pytest.fixture
def queries(engine: AsyncEngine) -> ReadModelQueries:
    return ReadModelQueries(engine)


@pytest.fixture
def waiter(engine: AsyncEngine, notifier: InProcessNotifier) -> CheckpointWaiter:
    return CheckpointWaiter(engine, notifier, PROJECTION_NAMES)
