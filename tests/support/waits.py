"""Waiting in tests for something the projector does, without sleeping blind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from readmodels.notifications.messages import Notifier

DEADLINE = 60.0


async def until(
    check: Callable[[], Awaitable[bool]], notifier: Notifier, within: float = DEADLINE
) -> None:
    """Until ``check`` holds: looked at on each checkpoint advance announced, and every 0.2 s
    (a switch, or a projector in another process, announces nothing here)."""
    async with asyncio.timeout(within), notifier.subscribe() as updates:
        while not await check():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.2):
                    await anext(updates)
