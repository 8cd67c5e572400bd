"""Every business rule of the Order aggregate, without a database."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from domain import events
from domain.errors import RuleViolated
from domain.order import Order, OrderStatus
from domain.values import OrderLine
from tests.support.factories import ADDRESS

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LINES = (OrderLine("A", 2, Decimal("19.99")), OrderLine("B", 1, Decimal("0.1")))


def placed() -> Order:
    order = Order("o-1")
    order.place("c-1", LINES, ADDRESS, NOW)
    return Order.replay("o-1", order.pending)


def violated(rule: str, action: object) -> None:
    assert callable(action)
    with pytest.raises(RuleViolated) as error:
        action()
    assert error.value.rule == rule


def test_placing_prices_the_lines_exactly() -> None:
    order = Order("o-1")
    order.place("c-1", LINES, ADDRESS, NOW)

    (event,) = order.pending
    assert isinstance(event, events.OrderPlaced)
    assert event.total == Decimal("40.08")
    assert event.lines[1].unit_price == Decimal("0.10")
    assert order.status is OrderStatus.PLACED


@pytest.mark.parametrize("count", [0, 101])
def test_an_order_has_one_to_a_hundred_lines(count: int) -> None:
    lines = tuple(OrderLine(f"S{n}", 1, Decimal(1)) for n in range(count))
    violated("line_count", lambda: Order("o").place("c", lines, ADDRESS, NOW))


def test_a_hundred_lines_are_allowed() -> None:
    lines = tuple(OrderLine(f"S{n}", 1, Decimal(1)) for n in range(100))
    order = Order("o")
    order.place("c", lines, ADDRESS, NOW)
    assert order.total == Decimal("100.00")


@pytest.mark.parametrize("quantity", [0, -1, 1001])
def test_quantity_is_one_to_a_thousand(quantity: int) -> None:
    lines = (OrderLine("A", quantity, Decimal(1)),)
    violated("quantity_range", lambda: Order("o").place("c", lines, ADDRESS, NOW))


def test_unit_price_is_not_negative() -> None:
    lines = (OrderLine("A", 1, Decimal("-0.01")),)
    violated("unit_price_not_negative", lambda: Order("o").place("c", lines, ADDRESS, NOW))


def test_an_order_is_placed_once() -> None:
    order = placed()
    violated("order_already_placed", lambda: order.place("c-1", LINES, ADDRESS, NOW))


def test_payment_must_equal_the_total() -> None:
    order = placed()
    violated("payment_equals_total", lambda: order.pay(Decimal("40.07"), NOW))
    order.pay(Decimal("40.080"), NOW)
    assert order.status is OrderStatus.PAID


def test_an_order_is_paid_once() -> None:
    order = placed()
    order.pay(Decimal("40.08"), NOW)
    violated("paid_once", lambda: order.pay(Decimal("40.08"), NOW))


def test_only_a_paid_order_ships() -> None:
    order = placed()
    violated("ship_requires_payment", lambda: order.ship("UPS", "1Z", NOW))
    order.pay(Decimal("40.08"), NOW)
    order.ship("UPS", "1Z", NOW)
    assert order.status is OrderStatus.SHIPPED


def test_the_address_can_change_until_the_order_ships() -> None:
    order = placed()
    order.pay(Decimal("40.08"), NOW)
    order.change_shipping_address(ADDRESS, NOW)
    order.ship("UPS", "1Z", NOW)
    violated(
        "address_changeable_until_shipped", lambda: order.change_shipping_address(ADDRESS, NOW)
    )


def test_a_shipped_order_cannot_be_cancelled() -> None:
    order = placed()
    order.pay(Decimal("40.08"), NOW)
    order.ship("UPS", "1Z", NOW)
    violated("cancellable_until_shipped", lambda: order.cancel("changed my mind", NOW))


def test_a_cancelled_order_cannot_be_cancelled_paid_or_shipped() -> None:
    order = placed()
    order.cancel("changed my mind", NOW)
    violated("cancellable_until_shipped", lambda: order.cancel("again", NOW))
    violated("payable_once_before_shipping", lambda: order.pay(Decimal("40.08"), NOW))
    violated("shippable_once_when_paid", lambda: order.ship("UPS", "1Z", NOW))


def test_a_broken_rule_records_no_event() -> None:
    order = placed()
    with pytest.raises(RuleViolated):
        order.pay(Decimal(1), NOW)
    assert order.pending == []
    assert order.version == 1
