"""GraphQL inputs, and their validation at the edge into domain commands.

GraphQL's type system already refuses wrong types and missing required fields. What it cannot
say (lengths, characters, formats, decimal places, magnitudes: the bounds of domain/limits.py)
is checked here and reported as ``InvalidInput`` naming the field, before any command exists.
Business rules (quantity range, price sign, payment amount) are the aggregate's, not checked
here.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Protocol, TypedDict

import strawberry

from domain import access, commands
from domain.access import Actor
from domain.commands import new_id, order_id_for
from domain.limits import (
    MAX_ORDER_TOTAL,
    MAX_UNIT_PRICE,
    id_problem,
    money_problem,
    text_problem,
)
from domain.values import Address, OrderLine
from graph import input_conversion

COUNTRY_PATTERN = re.compile(r"[A-Z]{2}")
MAX_ITEMS = 1000  # the aggregate's rule is 100 lines; this only bounds the work of checking


class InputError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@strawberry.input
class AddressInput:
    line1: str
    line2: str | None = None
    city: str
    postal_code: str
    country: str = strawberry.field(description="ISO 3166-1 alpha-2 code, e.g. US")


@strawberry.input
class OrderItemInput:
    sku: str
    quantity: int
    unit_price: Decimal


@strawberry.input
class PlaceOrderInput:
    order_id: strawberry.ID | None = None
    command_id: strawberry.ID | None = None
    customer_id: strawberry.ID
    items: list[OrderItemInput]
    shipping_address: AddressInput


@strawberry.input
class ChangeShippingAddressInput:
    order_id: strawberry.ID
    command_id: strawberry.ID | None = None
    expected_version: int | None = None
    shipping_address: AddressInput


@strawberry.input
class PayOrderInput:
    order_id: strawberry.ID
    command_id: strawberry.ID | None = None
    expected_version: int | None = None
    amount: Decimal


@strawberry.input
class ShipOrderInput:
    order_id: strawberry.ID
    command_id: strawberry.ID | None = None
    expected_version: int | None = None
    carrier: str
    tracking_number: str


@strawberry.input
class CancelOrderInput:
    order_id: strawberry.ID
    command_id: strawberry.ID | None = None
    expected_version: int | None = None
    reason: str


input_conversion.install(
    PlaceOrderInput,
    ChangeShippingAddressInput,
    PayOrderInput,
    ShipOrderInput,
    CancelOrderInput,
)


def identifier(value: str, field: str) -> str:
    if (problem := id_problem(value)) is not None:
        raise InputError(field, f"{field} {problem}")
    return value


def text(value: str, field: str, *, optional: bool = False) -> str:
    value = value.strip()
    if not value and optional:
        return value
    if (problem := text_problem(value)) is not None:
        raise InputError(field, f"{field} {problem}")
    return value


def amount(value: Decimal, field: str, maximum: Decimal) -> Decimal:
    if (problem := money_problem(value, maximum)) is not None:
        raise InputError(field, f"{field} {problem}")
    return value


def address(value: AddressInput, field: str) -> Address:
    country = value.country.strip().upper()
    if not COUNTRY_PATTERN.fullmatch(country):
        raise InputError(f"{field}.country", "country must be an ISO 3166-1 alpha-2 code")
    line2 = text(value.line2, f"{field}.line2", optional=True) if value.line2 else None
    return Address(
        line1=text(value.line1, f"{field}.line1"),
        line2=line2 or None,
        city=text(value.city, f"{field}.city"),
        postal_code=text(value.postal_code, f"{field}.postalCode"),
        country=country,
    )


def _command_id(value: strawberry.ID | None) -> str:
    return new_id() if value is None else identifier(str(value), "commandId")


def _expected(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise InputError("expectedVersion", "expectedVersion must not be negative")
    return value


class _ExistingOrderInput(Protocol):
    order_id: strawberry.ID
    command_id: strawberry.ID | None
    expected_version: int | None


class _Targeting(TypedDict):
    order_id: str
    command_id: str
    expected_version: int | None
    actor: Actor | None


def _targeting(data: _ExistingOrderInput, actor: Actor | None) -> _Targeting:
    """The fields every command on an existing order shares, checked once."""
    return {
        "order_id": identifier(data.order_id, "orderId"),
        "command_id": _command_id(data.command_id),
        "expected_version": _expected(data.expected_version),
        "actor": actor,
    }


def place_order(data: PlaceOrderInput, actor: Actor | None = None) -> commands.PlaceOrder:
    command_id = _command_id(data.command_id)
    customer_id = identifier(data.customer_id, "customerId")
    access.check_placement(actor, customer_id, order_id_chosen=data.order_id is not None)
    order_id = (
        order_id_for(access.idempotency_key(actor, command_id))
        if data.order_id is None
        else identifier(data.order_id, "orderId")
    )
    if len(data.items) > MAX_ITEMS:
        raise InputError("items", f"at most {MAX_ITEMS} items can be sent")
    lines = tuple(
        OrderLine(
            sku=text(item.sku, f"items[{n}].sku"),
            quantity=item.quantity,
            unit_price=amount(item.unit_price, f"items[{n}].unitPrice", MAX_UNIT_PRICE),
        )
        for n, item in enumerate(data.items)
    )
    return commands.PlaceOrder(
        order_id=order_id,
        command_id=command_id,
        customer_id=customer_id,
        actor=actor,
        lines=lines,
        shipping_address=address(data.shipping_address, "shippingAddress"),
    )


def change_shipping_address(
    data: ChangeShippingAddressInput, actor: Actor | None = None
) -> commands.ChangeShippingAddress:
    return commands.ChangeShippingAddress(
        **_targeting(data, actor),
        shipping_address=address(data.shipping_address, "shippingAddress"),
    )


def pay_order(data: PayOrderInput, actor: Actor | None = None) -> commands.PayOrder:
    return commands.PayOrder(
        **_targeting(data, actor),
        amount=amount(data.amount, "amount", MAX_ORDER_TOTAL),
    )


def ship_order(data: ShipOrderInput, actor: Actor | None = None) -> commands.ShipOrder:
    return commands.ShipOrder(
        **_targeting(data, actor),
        carrier=text(data.carrier, "carrier"),
        tracking_number=text(data.tracking_number, "trackingNumber"),
    )


def cancel_order(data: CancelOrderInput, actor: Actor | None = None) -> commands.CancelOrder:
    return commands.CancelOrder(
        **_targeting(data, actor),
        reason=text(data.reason, "reason"),
    )
