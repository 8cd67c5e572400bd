"""Real NATS JetStream for the relay's tests.

The shared server (ORDERGRAPH_TEST_NATS, default nats://127.0.0.1:4222) refuses two streams
whose subjects overlap, so each test gets a stream name and subject prefix of its own and
deletes its stream at the end. Unreachable: the tests skip locally and fail under CI=true,
as the PostgreSQL ones do. ``own_nats_server`` starts a server of the test's own (for stopping
it), on a free port with its own store directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from tests.support.serving import free_port, stop_process

NATS_URL = os.environ.get("ORDERGRAPH_TEST_NATS", "nats://127.0.0.1:4222")


@dataclass(frozen=True)
class StreamUnderTest:
    url: str
    name: str
    prefix: str


@dataclass(frozen=True)
class Stored:
    """One message as JetStream holds it."""

    seq: int
    subject: str
    headers: dict[str, str]
    body: dict[str, Any]


async def _reachable(url: str) -> None:
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0)
    await nc.close()


@pytest.fixture
async def jetstream() -> AsyncIterator[StreamUnderTest]:
    try:
        await _reachable(NATS_URL)
    except (OSError, nats.errors.Error, TimeoutError) as error:
        message = f"NATS unreachable at {NATS_URL}: {error!r}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    suffix = uuid.uuid4().hex[:10]
    stream = StreamUnderTest(NATS_URL, f"TEST_ORDERS_{suffix}", f"test{suffix}")
    yield stream
    nc = await nats.connect(NATS_URL)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(stream.name)
    finally:
        await nc.close()


async def stored_messages(url: str, stream: str) -> list[Stored]:
    """Everything the stream holds, in stream order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        found = []
        if info.state.messages:
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                raw = await js.get_msg(stream, seq)
                found.append(
                    Stored(
                        seq,
                        raw.subject or "",
                        dict(raw.headers or {}),
                        json.loads(raw.data or b"{}"),
                    )
                )
        return found
    finally:
        await nc.close()


class OwnNatsServer:
    """``nats-server -js`` on a port of its own; stop() and start() again keep its store."""

    def __init__(self, store_dir: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._store_dir = store_dir
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            raise RuntimeError("nats-server is not installed (Debian package nats-server)")
        self._process = await asyncio.create_subprocess_exec(
            binary,
            "-js",
            "-sd",
            str(self._store_dir),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(20):
            while True:
                try:
                    await _reachable(self.url)
                    return
                except (OSError, nats.errors.Error, TimeoutError):
                    await asyncio.sleep(0.05)  # the server offers no readiness event

    async def stop(self) -> None:
        if self._process is not None:
            await stop_process(self._process)
            self._process = None


@contextlib.asynccontextmanager
async def own_nats_server(store_dir: Path) -> AsyncIterator[OwnNatsServer]:
    server = OwnNatsServer(store_dir)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
