"""PostgreSQL's own view of who waits for a lock: how a test knows a session is blocked."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine


async def until_waiting_for_a_lock(engine: AsyncEngine, task: asyncio.Task[Any]) -> None:
    """Until a session waits for a lock, or ``task`` is done without having waited."""
    waiting = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    async with asyncio.timeout(10):
        while not task.done():
            async with engine.connect() as conn:
                if await conn.scalar(waiting):
                    return
            await asyncio.sleep(0.01)  # polling the server's own view of the lock wait
