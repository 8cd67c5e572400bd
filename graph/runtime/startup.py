"""Start-up checks and the errors an operator can act on, with the exit codes scripts rely on.

Each command checks the database before it does anything else, so that a mistake ends in one
sentence that names the host and what to check, not in a traceback from deep inside a driver
or the server's lifespan.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from graph.runtime.settings import Settings

# Exit codes (documented in docs/operations.md).
OK = 0
INTERNAL_ERROR = 1  # a bug: the traceback is printed
USAGE = 2  # a wrong argument or setting (argparse uses 2 too)
DATABASE_UNREACHABLE = 3  # cannot connect, refused, timed out, authentication failed
DATABASE_NOT_READY = 4  # reachable but not usable as it is: schema not at head, foreign tables
SUBSCRIPTION_FAILED = 5  # `subscribe`: the server answered with errors or went away
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class StartupError(Exception):
    """A problem the operator can fix, said in one line; ``exit_code`` is one of the above."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def where(database_url: str) -> str:
    """ "PostgreSQL at host:port, database db" or "SQLite file path", password never shown."""
    scheme, _, rest = database_url.partition("://")
    if scheme.startswith("sqlite"):
        return f"SQLite file {rest[1:] or '(memory)'}"
    parsed = urllib.parse.urlsplit(database_url)
    query = urllib.parse.parse_qs(parsed.query)
    host = parsed.hostname or ",".join(query.get("host", [])) or "localhost"
    port = parsed.port or 5432
    return f"PostgreSQL at {host}:{port}, database {parsed.path.lstrip('/') or '?'}"


def describe_connection_error(database_url: str, error: BaseException, timeout: float) -> str:
    place = where(database_url)
    chain = _causes(error)
    cause = next((e for e in chain if isinstance(e, TimeoutError)), chain[-1])
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    if isinstance(cause, TimeoutError):
        return (
            f"cannot connect to {place}: no answer within {timeout:g}s; check that the server "
            "is up and not overloaded, and that host and port in DATABASE_URL are right "
            "(DB_CONNECT_TIMEOUT sets the wait)"
        )
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate == "3D000":
        return f"cannot connect to {place}: {reason}; create it, or fix the name in DATABASE_URL"
    if sqlstate in ("28000", "28P01"):
        return (
            f"cannot connect to {place}: {reason}; check the user and password in DATABASE_URL "
            "and the server's pg_hba.conf"
        )
    if database_url.startswith("sqlite"):
        return f"cannot open {place}: {reason}; check that its directory exists and is writable"
    return (
        f"cannot connect to {place}: {reason}; check that the server is running and that "
        "host, port, user and database in DATABASE_URL are right"
    )


def _causes(error: BaseException) -> list[BaseException]:
    # SQLAlchemy wraps the driver's error (``.orig``), which may wrap another (``__cause__``);
    # a timeout's cause is the cancelled wait, which says nothing: stop there.
    chain = [error]
    while not isinstance(chain[-1], TimeoutError):
        inner = getattr(chain[-1], "orig", None) or chain[-1].__cause__
        if inner is None or inner in chain or isinstance(inner, asyncio.CancelledError):
            break
        chain.append(inner)
    return chain


def connect_args(settings: Settings) -> dict[str, object]:
    """Bound the connection attempt: a server that accepts TCP and never answers must not
    hold start-up (or a request) for asyncpg's 60 s default."""
    if settings.is_sqlite:
        return {}
    return {"timeout": settings.db_connect_timeout}


async def check_connection(engine: AsyncEngine, settings: Settings) -> None:
    """Connect once, bounded; StartupError(DATABASE_UNREACHABLE) saying where and why not."""
    from sqlalchemy.exc import SQLAlchemyError

    if settings.is_sqlite:
        path = Path(settings.database_url.partition("://")[2][1:])
        if not path.parent.is_dir():
            raise StartupError(
                f"cannot open {where(settings.database_url)}: no directory {path.parent}; "
                "check that its directory exists and is writable",
                DATABASE_UNREACHABLE,
            )
    try:
        async with asyncio.timeout(settings.db_connect_timeout + 1):
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
    except (OSError, TimeoutError, SQLAlchemyError) as error:
        raise StartupError(
            describe_connection_error(settings.database_url, error, settings.db_connect_timeout),
            DATABASE_UNREACHABLE,
        ) from error


async def check_database(engine: AsyncEngine, settings: Settings, *, migrate: bool) -> None:
    """Connect once (bounded), then bring the schema to head (``migrate``) or require it."""
    from migrations import SchemaOutOfDate, require_head, upgrade_to_head

    await check_connection(engine, settings)
    try:
        if migrate:
            await upgrade_to_head(engine)
        else:
            await require_head(engine)
    except SchemaOutOfDate as error:
        raise StartupError(str(error), DATABASE_NOT_READY) from error
