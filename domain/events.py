"""Domain events: facts in the past tense. Each carries the order id and when it happened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from domain.values import Address, OrderLine


@dataclass(frozen=True, slots=True)
class Event:
    """Marker base of every domain event."""

    order_id: str
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class OrderPlaced(Event):
    customer_id: str
    lines: tuple[OrderLine, ...]
    shipping_address: Address
    total: Decimal


@dataclass(frozen=True, slots=True)
class ShippingAddressChanged(Event):
    shipping_address: Address


@dataclass(frozen=True, slots=True)
class OrderPaid(Event):
    amount: Decimal


@dataclass(frozen=True, slots=True)
class OrderShipped(Event):
    carrier: str
    tracking_number: str


@dataclass(frozen=True, slots=True)
class OrderCancelled(Event):
    reason: str
