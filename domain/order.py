"""The Order aggregate: every business rule of an order lives here.

Each decision method checks its rules, then triggers an event; ``_apply`` is the only place
state changes, so replaying stored events and deciding new ones produce the same state.
A broken rule raises ``RuleViolated`` naming the rule, before any event is recorded.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from domain import events
from domain.errors import RuleViolated
from domain.limits import (
    MAX_LINE_TOTAL,
    MAX_LINES,
    MAX_ORDER_TOTAL,
    MAX_QUANTITY,
    MAX_UNIT_PRICE,
    id_problem,
    money_problem,
    text_problem,
)
from domain.values import Address, OrderLine, money


class OrderStatus(enum.StrEnum):
    PLACED = "PLACED"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    CANCELLED = "CANCELLED"


class Order:
    def __init__(self, order_id: str) -> None:
        self.id = order_id
        self.version = 0  # stream version as loaded; pending events are not counted
        self.status: OrderStatus | None = None
        self.customer_id = ""
        self.lines: tuple[OrderLine, ...] = ()
        self.shipping_address: Address | None = None
        self.total = Decimal("0.00")
        self.pending: list[events.Event] = []

    @classmethod
    def replay(cls, order_id: str, history: Iterable[events.Event]) -> Order:
        order = cls(order_id)
        for event in history:
            order._apply(event)
            order.version += 1
        return order

    @property
    def exists(self) -> bool:
        return self.status is not None

    # Decisions -------------------------------------------------------------------------

    def place(
        self,
        customer_id: str,
        lines: Sequence[OrderLine],
        shipping_address: Address,
        at: datetime,
    ) -> None:
        if self.exists:
            raise RuleViolated("order_already_placed", f"order {self.id} was already placed")
        if not 1 <= len(lines) <= MAX_LINES:
            raise RuleViolated(
                "line_count", f"an order has 1 to {MAX_LINES} lines, not {len(lines)}"
            )
        _require_id("order_id", self.id)
        _require_id("customer_id", customer_id)
        _require_address(shipping_address)
        for line in lines:
            _require_text("sku", line.sku)
            if not 1 <= line.quantity <= MAX_QUANTITY:
                raise RuleViolated(
                    "quantity_range",
                    f"quantity of {line.sku} must be 1 to {MAX_QUANTITY}, not {line.quantity}",
                )
            if (problem := money_problem(line.unit_price, MAX_UNIT_PRICE)) is not None:
                raise RuleViolated("unit_price_range", f"unit price of {line.sku} {problem}")
            if line.unit_price < 0:
                raise RuleViolated(
                    "unit_price_not_negative",
                    f"unit price of {line.sku} must not be negative, not {line.unit_price}",
                )
        priced = tuple(OrderLine(line.sku, line.quantity, money(line.unit_price)) for line in lines)
        for line in priced:
            if line.line_total > MAX_LINE_TOTAL:
                raise RuleViolated(
                    "line_total_range",
                    f"line total of {line.sku} must be at most {MAX_LINE_TOTAL},"
                    f" not {line.line_total}",
                )
        total = money(sum((line.line_total for line in priced), Decimal(0)))
        if total > MAX_ORDER_TOTAL:
            raise RuleViolated(
                "order_total_range", f"order total must be at most {MAX_ORDER_TOTAL}, not {total}"
            )
        self._trigger(
            events.OrderPlaced(
                order_id=self.id,
                occurred_at=at,
                customer_id=customer_id,
                lines=priced,
                shipping_address=shipping_address,
                total=total,
            )
        )

    def change_shipping_address(self, address: Address, at: datetime) -> None:
        self._require_open("address_changeable_until_shipped", "change the address of")
        _require_address(address)
        self._trigger(
            events.ShippingAddressChanged(
                order_id=self.id, occurred_at=at, shipping_address=address
            )
        )

    def pay(self, amount: Decimal, at: datetime) -> None:
        self._require_open("payable_once_before_shipping", "pay")
        if self.status is OrderStatus.PAID:
            raise RuleViolated("paid_once", f"order {self.id} is already paid")
        if money_problem(amount, MAX_ORDER_TOTAL) is not None or amount != self.total:
            raise RuleViolated(
                "payment_equals_total",
                f"payment {amount} does not equal the order total {self.total}",
            )
        self._trigger(events.OrderPaid(order_id=self.id, occurred_at=at, amount=money(amount)))

    def ship(self, carrier: str, tracking_number: str, at: datetime) -> None:
        self._require_open("shippable_once_when_paid", "ship")
        if self.status is not OrderStatus.PAID:
            raise RuleViolated("ship_requires_payment", f"order {self.id} is not paid")
        _require_text("carrier", carrier)
        _require_text("tracking_number", tracking_number)
        self._trigger(
            events.OrderShipped(
                order_id=self.id, occurred_at=at, carrier=carrier, tracking_number=tracking_number
            )
        )

    def cancel(self, reason: str, at: datetime) -> None:
        self._require_open("cancellable_until_shipped", "cancel")
        _require_text("reason", reason)
        self._trigger(events.OrderCancelled(order_id=self.id, occurred_at=at, reason=reason))

    def _require_open(self, rule: str, action: str) -> None:
        """Shipped and cancelled orders are final: nothing more may happen to them."""
        if self.status in (OrderStatus.SHIPPED, OrderStatus.CANCELLED):
            assert self.status is not None
            raise RuleViolated(
                rule, f"cannot {action} order {self.id}: it is {self.status.value.lower()}"
            )

    # State changes ---------------------------------------------------------------------

    def _trigger(self, event: events.Event) -> None:
        self._apply(event)
        self.pending.append(event)

    def _apply(self, event: events.Event) -> None:
        match event:
            case events.OrderPlaced():
                self.status = OrderStatus.PLACED
                self.customer_id = event.customer_id
                self.lines = event.lines
                self.shipping_address = event.shipping_address
                self.total = event.total
            case events.ShippingAddressChanged():
                self.shipping_address = event.shipping_address
            case events.OrderPaid():
                self.status = OrderStatus.PAID
            case events.OrderShipped():
                self.status = OrderStatus.SHIPPED
            case events.OrderCancelled():
                self.status = OrderStatus.CANCELLED


def _require_text(name: str, value: str) -> None:
    """Text within the domain's bounds (domain/limits.py), whoever sent the command."""
    if (problem := text_problem(value)) is not None:
        raise RuleViolated("text_bounds", f"{name} {problem}")


def _require_id(name: str, value: str) -> None:
    if (problem := id_problem(value)) is not None:
        raise RuleViolated("id_format", f"{name} {problem}")


def _require_address(address: Address) -> None:
    for name in ("line1", "city", "postal_code", "country"):
        _require_text(f"shipping_address.{name}", getattr(address, name))
    if address.line2 is not None:
        _require_text("shipping_address.line2", address.line2)
