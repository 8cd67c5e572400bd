"""Events as the hand-written codec before msgspec stored them, and what they decode to."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from domain import events
from domain.values import Address, OrderLine

# The rows as that codec stored them (json.dumps of its dicts, times
# with "+00:00", non-ASCII escaped), copied from its output: they must decode as before.
OLD_ROWS = [
    (
        "OrderPlaced",
        2,
        '{"order_id": "o-1", "occurred_at": "2026-03-04T05:06:07.890123+00:00", "customer_id":'
        ' "c-1", "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": "19.99"}, {"sku":'
        ' "SKU-2", "quantity": 1, "unit_price": "0.10"}], "shipping_address": {"line1": "Rue'
        ' de l\'\\u00c9glise 1", "city": "Z\\u00fcrich", "postal_code": "8001", "country":'
        ' "CH", "line2": "\\u00c9tage 2"}, "total": "40.08"}',
    ),
    (
        "ShippingAddressChanged",
        1,
        '{"order_id": "o-1", "occurred_at": "2026-03-04T05:06:07.890123+00:00",'
        ' "shipping_address": {"line1": "1 Main St", "city": "Springfield", "postal_code":'
        ' "12345", "country": "US", "line2": null}}',
    ),
    (
        "OrderPaid",
        1,
        '{"order_id": "o-1", "occurred_at": "2026-03-04T05:06:07.890123+00:00", "amount": "40.08"}',
    ),
    (
        "OrderShipped",
        1,
        '{"order_id": "o-1", "occurred_at": "2026-03-04T05:06:07.890123+00:00", "carrier":'
        ' "UPS", "tracking_number": "1Z999"}',
    ),
    (
        "OrderCancelled",
        1,
        '{"order_id": "o-1", "occurred_at": "2026-03-04T05:06:07.890123+00:00", "reason":'
        ' "changed mind"}',
    ),
]
OLD_AT = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
OLD_EVENTS = [
    events.OrderPlaced(
        "o-1",
        OLD_AT,
        "c-1",
        (OrderLine("SKU-1", 2, Decimal("19.99")), OrderLine("SKU-2", 1, Decimal("0.10"))),
        Address("Rue de l'Église 1", "Zürich", "8001", "CH", "Étage 2"),
        Decimal("40.08"),
    ),
    events.ShippingAddressChanged(
        "o-1", OLD_AT, Address("1 Main St", "Springfield", "12345", "US")
    ),
    events.OrderPaid("o-1", OLD_AT, Decimal("40.08")),
    events.OrderShipped("o-1", OLD_AT, "UPS", "1Z999"),
    events.OrderCancelled("o-1", OLD_AT, "changed mind"),
]
