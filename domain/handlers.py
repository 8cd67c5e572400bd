"""Command handlers: load the Order, let it decide, save what it decided.

Plain functions, wired in the explicit ``COMMAND_HANDLERS`` registry at the bottom. How an
order maps onto the event store (its stream, loading, saving) is the repository's
(domain/eventstore/repository.py); what the handlers add is idempotency by command id, the
expected version a caller asked for, and re-deciding after a lost race.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain import access, commands
from domain.errors import DomainError, OrderNotFound, VersionConflict
from domain.eventstore import codec
from domain.eventstore.records import CommandRecord
from domain.eventstore.repository import OrderRepository, stream_id
from domain.order import Order
from domain.ports import EventStorePort
from domain.stream_locks import StreamLocks

# How long a command without an expected version keeps being re-decided after losing races
# to other processes (within one process, StreamLocks means it never races). Bounded by time,
# not by a count: under contention from several replicas, a handful of attempts can all lose.
SETTLE_SECONDS = 10.0
# The longest pause between two attempts; a random share of it keeps replicas from colliding
# in lock step.
MAX_RETRY_PAUSE = 0.1


@dataclass(frozen=True, slots=True)
class CommandResult:
    command_id: str
    order_id: str
    version: int  # the order's stream version after the command
    position: int  # global position of the command's last event: the read-your-writes token
    duplicate: bool = False  # the command id was handled before; this is its first result


@dataclass(frozen=True, slots=True)
class HandlerContext:
    store: EventStorePort
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    locks: StreamLocks = field(default_factory=StreamLocks)
    settle_seconds: float = SETTLE_SECONDS
    orders: OrderRepository = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "orders", OrderRepository(self.store))


# Fields that only label a command. Who asks is not part of what is asked either: the
# idempotency key is already per subject.
_LABELS = frozenset({"command_id", "correlation_id", "actor"})


def fingerprint(command: commands.Command) -> str:
    """Digest of what the command asks for; ids that only label it are left out. Stored with
    the command id: the text hashed must stay the same from release to release (tested)."""
    payload = codec.to_json_without(command, _LABELS)
    canonical = json.dumps([type(command).__name__, payload], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def _handle(
    command: commands.Command,
    context: HandlerContext,
    decide: Callable[[Order, datetime], None],
    *,
    creates: bool = False,
) -> CommandResult:
    key = access.idempotency_key(command.actor, command.command_id)
    record = CommandRecord(key, fingerprint(command))
    # No look-up of the command id up front: the append checks it inside its transaction,
    # and a duplicate refused by the rules (paid twice, placed twice) is caught below.
    try:
        async with context.locks.hold(stream_id(command.order_id)):
            return await _decide_and_append(command, context, decide, record, creates)
    except DomainError:
        # A first copy of this same command may have succeeded (earlier, or concurrently
        # while we decided); then the refusal is an artefact of its success, and its result
        # is ours.
        previous = await context.orders.find_command(record)
        if previous is None:
            raise
    return CommandResult(
        command.command_id, command.order_id, previous.version, previous.position, True
    )


async def _decide_and_append(
    command: commands.Command,
    context: HandlerContext,
    decide: Callable[[Order, datetime], None],
    record: CommandRecord,
    creates: bool,
) -> CommandResult:
    unconditional = command.expected_version is None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + context.settle_seconds
    attempt = 0
    while True:
        attempt += 1
        recalled = None
        if creates and attempt == 1:
            # Optimistic creation: a new order has no history to load. Appending with "no
            # stream" is the existence check; if the order exists after all, the conflict
            # sends us round again, to load it and let the aggregate refuse.
            order = Order(command.order_id)
        elif attempt == 1 and (recalled := context.orders.recall(command.order_id)):
            # Remembered from this process's last load or save of it: no read. The append
            # expects that version, so a stale memory cannot write; and a refusal made on it
            # is made again below, on what the store holds.
            order = recalled
        else:
            order = await context.orders.load(command.order_id)
        try:
            return await _decide_and_save(command, context, decide, record, order, creates)
        except DomainError as error:
            if recalled is not None:
                context.orders.forget(command.order_id)
                continue
            # A writer in another process got in first. Asked-for concurrency (an expected
            # version) is the caller's to settle; otherwise reload and decide again.
            if (
                not isinstance(error, VersionConflict)
                or not unconditional
                or loop.time() >= deadline
            ):
                raise
            if not (creates and attempt == 1):
                await asyncio.sleep(random.uniform(0, MAX_RETRY_PAUSE))


async def _decide_and_save(
    command: commands.Command,
    context: HandlerContext,
    decide: Callable[[Order, datetime], None],
    record: CommandRecord,
    order: Order,
    creates: bool,
) -> CommandResult:
    if not creates and not (order.exists and _may_act_on(command, order)):
        # Someone else's order is, to this actor, an order that does not exist.
        raise OrderNotFound(command.order_id)
    if command.expected_version is not None and command.expected_version != order.version:
        raise VersionConflict(stream_id(order.id), command.expected_version, order.version)
    decide(order, context.clock())
    metadata = {
        "command_id": command.command_id,
        "command_type": type(command).__name__,
        "correlation_id": command.correlation_id or command.command_id,
        "causation_id": command.command_id,
        "actor": _AUTH_NONE if command.actor is None else command.actor.audit(),
    }
    result = await context.orders.save(order, metadata, record)
    return CommandResult(
        command.command_id, command.order_id, result.version, result.position, result.duplicate
    )


_AUTH_NONE = access.Actor.unrestricted_access().audit()


def _may_act_on(command: commands.Command, order: Order) -> bool:
    return command.actor is None or access.owns(command.actor, order.customer_id)


async def place_order(command: commands.PlaceOrder, context: HandlerContext) -> CommandResult:
    def decide(order: Order, now: datetime) -> None:
        order.place(command.customer_id, command.lines, command.shipping_address, now)

    return await _handle(command, context, decide, creates=True)


async def change_shipping_address(
    command: commands.ChangeShippingAddress, context: HandlerContext
) -> CommandResult:
    def decide(order: Order, now: datetime) -> None:
        order.change_shipping_address(command.shipping_address, now)

    return await _handle(command, context, decide)


async def pay_order(command: commands.PayOrder, context: HandlerContext) -> CommandResult:
    def decide(order: Order, now: datetime) -> None:
        order.pay(command.amount, now)

    return await _handle(command, context, decide)


async def ship_order(command: commands.ShipOrder, context: HandlerContext) -> CommandResult:
    def decide(order: Order, now: datetime) -> None:
        order.ship(command.carrier, command.tracking_number, now)

    return await _handle(command, context, decide)


async def cancel_order(command: commands.CancelOrder, context: HandlerContext) -> CommandResult:
    def decide(order: Order, now: datetime) -> None:
        order.cancel(command.reason, now)

    return await _handle(command, context, decide)


Handler = Callable[[Any, HandlerContext], Awaitable[CommandResult]]

COMMAND_HANDLERS: dict[type[commands.Command], Handler] = {
    commands.PlaceOrder: place_order,
    commands.ChangeShippingAddress: change_shipping_address,
    commands.PayOrder: pay_order,
    commands.ShipOrder: ship_order,
    commands.CancelOrder: cancel_order,
}
