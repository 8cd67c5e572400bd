"""Telling a database outage from a bug.

An outage (the server is unreachable, restarting, out of connections, or too slow to answer
in time) is worth retrying and is reported to clients as "unavailable, try again"; anything
else that escapes is a defect and stays masked. Both drivers wrap their errors in SQLAlchemy's,
so the whole chain of causes is inspected.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from sqlalchemy import exc

T = TypeVar("T")

# SQLSTATE classes: 08 connection exception, 53 insufficient resources (too many
# connections, out of memory or disk), 57P operator intervention (shutdown, crash, starting).
_OUTAGE_SQLSTATES = ("08", "53", "57P")


def is_outage(error: BaseException) -> bool:
    for cause in _chain(error):
        if isinstance(cause, OSError | TimeoutError | exc.TimeoutError):
            return True  # refused, reset, unreachable; a connect or pool wait that timed out
        if isinstance(cause, exc.DBAPIError) and cause.connection_invalidated:
            return True  # the connection died under a statement
        if isinstance(cause, sqlite3.OperationalError):
            return True  # "database is locked" past busy_timeout, or the file is unusable
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_OUTAGE_SQLSTATES):
            return True
    return False


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        cause = todo.pop()
        if cause is None or id(cause) in seen:
            continue
        seen.add(id(cause))
        yield cause
        todo += [cause.__cause__, cause.__context__, getattr(cause, "orig", None)]


async def once_more_after_outage(read: Callable[[], Awaitable[T]]) -> T:
    """``read()``, and once more if it met an outage. Right after the database comes back,
    the first statement on a pooled connection fails (the connection died with the server)
    and makes the pool replace the others; the second try gets a fresh one."""
    try:
        return await read()
    except Exception as error:
        if not is_outage(error):
            raise
    return await read()
