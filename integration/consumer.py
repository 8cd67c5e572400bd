"""The reference consumer: how another service takes orders.v1 events exactly once.

JetStream delivers at least once: a consumer that handles a message and dies before its ack
gets it again, and a relay that was down longer than the duplicate window can publish a
message twice. So the consumer keeps an *inbox* of the message ids it has handled, in its own
database, and writes the inbox row in the same transaction as whatever handling the message
does: either both commit or neither does. A message whose id is already in the inbox is
acknowledged and dropped. Acknowledge only after that transaction commits.

Events of one order arrive in their order (the relay publishes them so, and one durable
consumer delivers in stream order); ``orderVersion`` lets a consumer check it too.

This is a small, complete example (docs/integration.md walks through it); a real service
would keep its own tables beside the inbox and do its work in ``handle``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import nats
import nats.errors
import sqlalchemy as sa
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.eventstore.engines import write_transaction
from domain.eventstore.tables import UTCDateTime

inbox_metadata = sa.MetaData()

inbox = sa.Table(
    "inbox",
    inbox_metadata,
    sa.Column("message_id", sa.String(300), primary_key=True),
    sa.Column("handled_at", UTCDateTime, nullable=False),
)

Handler = Callable[[AsyncConnection, dict[str, Any]], Awaitable[None]]


class InboxConsumer:
    def __init__(
        self,
        engine: AsyncEngine,
        handle: Handler,
        *,
        url: str,
        stream: str,
        subjects: str,  # e.g. "orders.v1.>" or "orders.v1.OrderPaid.*"
        durable: str,
        ack_wait: float = 30.0,
    ) -> None:
        self._engine = engine
        self._handle = handle
        self._url = url
        self._stream = stream
        self._subjects = subjects
        self._durable = durable
        self._ack_wait = ack_wait
        self._nc: Client | None = None
        self._sub: Any = None
        self.handled = 0
        self.dropped = 0  # already in the inbox: redelivered, or published twice

    async def start(self) -> None:
        async with self._engine.begin() as conn:
            await conn.run_sync(inbox_metadata.create_all)
        self._nc = await nats.connect(self._url)
        js = self._nc.jetstream()
        self._sub = await js.pull_subscribe(
            self._subjects,
            durable=self._durable,
            stream=self._stream,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait,
                max_ack_pending=1,  # see poll()
            ),
        )

    async def stop(self) -> None:
        if self._nc is not None:
            await self._nc.close()
            self._nc = None

    async def poll(self, wait: float = 1.0) -> bool:
        """Take the next message, if one comes within ``wait`` seconds. One at a time, with at
        most one unacknowledged (``max_ack_pending=1``): a redelivered message then comes
        before anything after it, so each order's events stay in order. (A consumer that
        needs more speed runs one such consumer per subject filter, e.g. per event type.)"""
        try:
            messages = await self._sub.fetch(1, timeout=wait)
        except nats.errors.TimeoutError:
            return False
        for message in messages:
            await self.take(message)
        return bool(messages)

    async def take(self, message: Msg) -> None:
        body = json.loads(message.data)
        async with write_transaction(self._engine) as conn:
            seen = await conn.scalar(
                sa.select(inbox.c.message_id).where(inbox.c.message_id == body["messageId"])
            )
            if seen is None:
                await conn.execute(
                    inbox.insert().values(message_id=body["messageId"], handled_at=_now())
                )
                await self._handle(conn, body)
        if seen is None:
            self.handled += 1
        else:
            self.dropped += 1
        await self.ack(message)

    async def ack(self, message: Msg) -> None:
        await message.ack()


def _now() -> datetime:
    return datetime.now(UTC)
