"""Orders as event streams: the stream an order lives in, loading an Order by replaying it, and
saving what it decided. The one place that knows how an aggregate maps onto the event store."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from domain.eventstore import codec
from domain.eventstore.records import AppendResult, CommandRecord, NewEvent, StreamState
from domain.order import Order
from domain.ports import EventStorePort

STREAM_PREFIX = "order-"


def stream_id(order_id: str) -> str:
    return f"{STREAM_PREFIX}{order_id}"


def order_id_of(stream: str) -> str:
    return stream.removeprefix(STREAM_PREFIX)


class OrderRepository:
    def __init__(self, store: EventStorePort) -> None:
        self.store = store

    async def load(self, order_id: str) -> Order:
        history = await self.store.read_stream(stream_id(order_id))
        return Order.replay(
            order_id, (codec.decode(e.event_type, e.schema_version, e.data) for e in history)
        )

    async def save(
        self, order: Order, metadata: Mapping[str, Any], command: CommandRecord
    ) -> AppendResult:
        """Append the order's pending events, expecting the version it was loaded at.

        Raises VersionConflict if another writer appended first; a command id already
        stored returns that command's first result instead (see EventStore.append)."""
        new_events = [
            NewEvent(*codec.encode(event), dict(metadata), event) for event in order.pending
        ]
        expected = order.version if order.version else StreamState.NO_STREAM
        return await self.store.append(stream_id(order.id), new_events, expected, command)

    async def find_command(self, command: CommandRecord) -> AppendResult | None:
        return await self.store.find_command(command)
