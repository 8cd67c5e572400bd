"""One command at a time per stream, within a process.

Commands on different streams still run side by side (and group commit batches their
appends); commands on the same stream queue here, each deciding on the state its predecessor
left. Without this, concurrent commands on one order all decide on the same version and all
but one lose the race: a conflict that a command without ``expectedVersion`` never asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class StreamLocks:
    """A lock per stream that exists only while someone holds or waits for it, so a
    process that has touched a million orders keeps no lock for any of them."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @contextlib.asynccontextmanager
    async def hold(self, stream_id: str) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(stream_id, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[stream_id]
