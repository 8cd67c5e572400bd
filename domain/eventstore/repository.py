"""Orders as event streams: the stream an order lives in, loading an Order by replaying it, and
saving what it decided. The one place that knows how an aggregate maps onto the event store."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from domain import events
from domain.eventstore import codec
from domain.eventstore.records import AppendResult, CommandRecord, NewEvent, StreamState
from domain.order import Order
from domain.ports import EventStorePort

STREAM_PREFIX = "order-"
# Orders whose history this process remembers (the most recently used; each a handful of
# events).
REMEMBERED_ORDERS = 1024


def stream_id(order_id: str) -> str:
    return f"{STREAM_PREFIX}{order_id}"


def order_id_of(stream: str) -> str:
    return stream.removeprefix(STREAM_PREFIX)


class OrderRepository:
    """Loads and saves orders; remembers the history of the orders it loaded or saved last.

    What it remembers can be stale: another process may have appended since. ``recall`` is
    therefore only for a decision the append then checks (it expects the remembered version)
    and that is made again on a fresh ``load`` whenever it is refused (domain/handlers.py).
    """

    def __init__(self, store: EventStorePort, remembered: int = REMEMBERED_ORDERS) -> None:
        self.store = store
        self._capacity = remembered
        self._histories: OrderedDict[str, tuple[events.Event, ...]] = OrderedDict()

    async def load(self, order_id: str) -> Order:
        history = await self.store.read_stream(stream_id(order_id))
        decoded = tuple(codec.decode(e.event_type, e.schema_version, e.data) for e in history)
        self._remember(order_id, decoded)
        return Order.replay(order_id, decoded)

    def recall(self, order_id: str) -> Order | None:
        """The order as this process last loaded or saved it, without a read; None if it is
        not remembered."""
        history = self._histories.get(order_id)
        if history is None:
            return None
        self._histories.move_to_end(order_id)
        return Order.replay(order_id, history)

    def forget(self, order_id: str) -> None:
        self._histories.pop(order_id, None)

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
        try:
            result = await self.store.append(stream_id(order.id), new_events, expected, command)
        except BaseException:
            self.forget(order.id)
            raise
        before = self._histories.get(order.id, ()) if order.version else ()
        if result.duplicate or len(before) != order.version:
            self.forget(order.id)  # not what was appended now, or no history to extend
        else:
            self._remember(order.id, before + tuple(order.pending))
        return result

    async def find_command(self, command: CommandRecord) -> AppendResult | None:
        return await self.store.find_command(command)

    def _remember(self, order_id: str, history: Sequence[events.Event]) -> None:
        self._histories[order_id] = tuple(history)
        self._histories.move_to_end(order_id)
        while len(self._histories) > self._capacity:
            self._histories.popitem(last=False)
