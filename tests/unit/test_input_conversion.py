"""Our planned input conversion builds exactly what strawberry's generic conversion builds."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.types.arguments import convert_argument

from graph import inputs
from graph.schema import build_schema

SCHEMA = build_schema()


def convert(value: dict[str, Any], cls: type) -> Any:
    """As strawberry converts a mutation's ``input`` argument in our schema."""
    registry = SCHEMA.schema_converter.scalar_registry
    return convert_argument(value, cls, registry, SCHEMA.config)


ADDRESS = {"line1": "1 Main St", "city": "Springfield", "postalCode": "12345", "country": "US"}

CASES: list[tuple[type, dict[str, Any]]] = [
    (
        inputs.PlaceOrderInput,
        {
            "customerId": "alice",
            "items": [
                {"sku": "BOOK-1", "quantity": 2, "unitPrice": Decimal("19.99")},
                {"sku": "PEN-7", "quantity": 1, "unitPrice": Decimal("3.50")},
            ],
            "shippingAddress": ADDRESS,
        },
    ),
    (
        inputs.PlaceOrderInput,
        {
            "orderId": "o-1",
            "commandId": "c-1",
            "customerId": "alice",
            "items": [],
            "shippingAddress": {**ADDRESS, "line2": None},
        },
    ),
    (
        inputs.ChangeShippingAddressInput,
        {"orderId": "o-1", "expectedVersion": 3, "shippingAddress": {**ADDRESS, "line2": "B"}},
    ),
    (inputs.PayOrderInput, {"orderId": "o-1", "amount": Decimal("43.48"), "commandId": None}),
    (inputs.ShipOrderInput, {"orderId": "o-1", "carrier": "UPS", "trackingNumber": "1Z"}),
    (inputs.CancelOrderInput, {"orderId": "o-1", "reason": "changed mind"}),
]


@pytest.mark.parametrize(("cls", "value"), CASES)
def test_planned_conversion_equals_strawberrys(cls: type, value: dict[str, Any]) -> None:
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    planned = convert(value, cls)
    hook, definition.from_input = definition.from_input, None
    try:
        generic = convert(value, cls)
    finally:
        definition.from_input = hook
    assert hook is not None
    assert planned == generic
    assert type(planned) is cls


def test_lists_are_copied_not_shared() -> None:
    items = [{"sku": "A", "quantity": 1, "unitPrice": Decimal("1.00")}]
    value = {"customerId": "c", "items": items, "shippingAddress": ADDRESS}
    built = convert(value, inputs.PlaceOrderInput)
    assert built.items is not items
    assert isinstance(built.items[0], inputs.OrderItemInput)
    assert isinstance(built.shipping_address, inputs.AddressInput)


def test_names_follow_the_schemas_naming_convention() -> None:
    """Without auto_camel_case the input keeps Python's names, and so must the plan."""
    config = StrawberryConfig(auto_camel_case=False)
    registry = SCHEMA.schema_converter.scalar_registry
    value = {"order_id": "o-1", "amount": Decimal("1.00"), "expected_version": 2}
    planned = convert_argument(value, inputs.PayOrderInput, registry, config)
    assert planned == inputs.PayOrderInput(
        order_id=strawberry.ID("o-1"), command_id=None, expected_version=2, amount=Decimal("1.00")
    )
