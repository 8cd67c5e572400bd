"""A relay process that stops dead at one step of a batch, for the kill -9 tests.

``python -m tests.support.relay_process STEP BATCH_SIZE`` with DATABASE_URL, NATS_URL,
NATS_STREAM and
NATS_SUBJECT_PREFIX set: the real relay, except that at STEP (``read``: batch read, nothing
published; ``published``: every PubAck in, checkpoint not yet written; ``checkpointed``:
the first batch committed) it prints STEP and waits to be killed.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from domain.eventstore.engines import create_engine
from domain.eventstore.store import RecordedEvent
from graph.runtime.settings import Settings
from integration.jetstream import Ack, JetStreamPublisher
from integration.relay import Relay
from readmodels.notifications.inprocess import InProcessNotifier


class StopAt(Relay):
    stop_at = ""

    async def _halt(self, step: str) -> None:
        if step == self.stop_at:
            print(step, flush=True)
            await asyncio.Event().wait()  # until SIGKILL

    async def _read(self, conn: AsyncConnection, after: int) -> list[RecordedEvent]:
        recorded = await super()._read(conn, after)
        await self._halt("read")
        return recorded

    async def _publish(self, recorded: Sequence[RecordedEvent]) -> list[Ack]:
        acks = await super()._publish(recorded)
        await self._halt("published")
        return acks

    async def step(self) -> int:
        sent = await super().step()
        await self._halt("checkpointed")
        return sent


async def main(step: str, batch_size: int) -> None:
    settings = Settings.from_env()
    assert settings.nats_url
    engine = create_engine(settings.database_url)
    publisher = JetStreamPublisher(
        settings.nats_url, settings.nats_stream, settings.nats_subject_prefix
    )
    relay = StopAt(engine, publisher, InProcessNotifier(), batch_size=batch_size)
    relay.stop_at = step
    try:
        await relay.drain()
    finally:
        await publisher.close()
        await engine.dispose()
    print("drained", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
