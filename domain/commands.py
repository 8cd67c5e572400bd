"""Commands: requests in the imperative, one per GraphQL mutation.

Every command carries a command id (the idempotency key; generated when the caller gave none)
and a correlation id. ``expected_version`` is the caller's optimistic-concurrency guard: None
means "whatever is current", and then the handler may retry on a concurrent write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal

from domain.access import Actor
from domain.values import Address, OrderLine


def new_id() -> str:
    return str(uuid.uuid4())


# Namespace for order ids derived from command ids; see PlaceOrder.
_ORDER_ID_NAMESPACE = uuid.UUID("5d0c3f59-4b1f-4c8e-9a43-0b7c5f6a2e11")


def order_id_for(command_key: str) -> str:
    """A PlaceOrder without an order id gets one derived from its command's idempotency key
    (see domain/access.py), so that sending the same command again names the same order and
    is recognised as a duplicate."""
    return str(uuid.uuid5(_ORDER_ID_NAMESPACE, command_key))


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Marker base of every command."""

    order_id: str
    command_id: str = field(default_factory=new_id)
    correlation_id: str | None = None
    expected_version: int | None = None
    # Who sent it (recorded in each event's metadata); None: AUTH=none, nobody identified.
    actor: Actor | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceOrder(Command):
    customer_id: str
    lines: tuple[OrderLine, ...]
    shipping_address: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeShippingAddress(Command):
    shipping_address: Address


@dataclass(frozen=True, slots=True, kw_only=True)
class PayOrder(Command):
    amount: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class ShipOrder(Command):
    carrier: str
    tracking_number: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder(Command):
    reason: str
