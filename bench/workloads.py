"""What the virtual clients send: GraphQL documents and bodies, and the per-client order book
that keeps the mixed workload's commands valid (so a rule violation is a real error).

The baselines take the very same bodies, so both sides parse the same bytes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

JSON = dict[str, Any]

_RESULT = (
    "{ __typename ... on CommandAccepted { orderId version position } "
    "... on InvalidInput { message } ... on OrderNotFound { message } "
    "... on VersionConflict { message } ... on RuleViolated { message } }"
)


def _mutation(field_name: str, input_type: str) -> str:
    return f"mutation($input: {input_type}!) {{ {field_name}(input: $input) {_RESULT} }}"


PLACE = _mutation("placeOrder", "PlaceOrderInput")
PAY = _mutation("payOrder", "PayOrderInput")
SHIP = _mutation("shipOrder", "ShipOrderInput")
CANCEL = _mutation("cancelOrder", "CancelOrderInput")
CHANGE_ADDRESS = _mutation("changeShippingAddress", "ChangeShippingAddressInput")

ORDER = (
    "query($id: ID!) { order(id: $id) { id customerId status total version placedAt "
    "lines { sku quantity unitPrice lineTotal } "
    "shippingAddress { line1 line2 city postalCode country } } }"
)
CAUGHT_UP = "subscription($position: Position!) { caughtUp(position: $position) { position } }"

ADDRESS: JSON = {
    "line1": "1 Main St",
    "city": "Springfield",
    "postalCode": "12345",
    "country": "US",
}
NEW_ADDRESS: JSON = {**ADDRESS, "line1": "2 Elm St", "line2": "Flat 3"}
ITEMS: list[JSON] = [
    {"sku": "BOOK-1", "quantity": 2, "unitPrice": "19.99"},
    {"sku": "PEN-7", "quantity": 1, "unitPrice": "3.50"},
]
# payOrder must name the exact total, as a decimal string.
TOTAL = str(sum(Decimal(i["unitPrice"]) * i["quantity"] for i in ITEMS))


def place_body(customer_id: str) -> JSON:
    input_: JSON = {"customerId": customer_id, "items": ITEMS, "shippingAddress": ADDRESS}
    return {"query": PLACE, "variables": {"input": input_}}


def order_body(order_id: str) -> JSON:
    return {"query": ORDER, "variables": {"id": order_id}}


@dataclass(frozen=True, slots=True)
class Accepted:
    order_id: str
    position: int


class CommandRefused(Exception):
    """The server answered, but not with CommandAccepted (or not with GraphQL data)."""


def accepted(response: JSON, field_name: str) -> Accepted:
    result = (response.get("data") or {}).get(field_name)
    if not result or result.get("__typename") != "CommandAccepted":
        raise CommandRefused(str(result or response.get("errors"))[:300])
    return Accepted(str(result["orderId"]), int(result["position"]))


@dataclass
class OrderBook:
    """One client's own orders by state: only this client touches them, so every command it
    picks is valid when sent."""

    customer_id: str
    rng: random.Random
    placed: list[str] = field(default_factory=list)
    paid: list[str] = field(default_factory=list)

    # Operation mix of the mixed workload (weights); each is one command, one event.
    OPERATIONS = ("place", "pay", "ship", "cancel", "address")
    WEIGHTS = (30, 25, 15, 15, 15)

    def next_command(self) -> tuple[str, str, JSON]:
        """(operation, mutation field, request body); falls back to placing an order."""
        op = self.rng.choices(self.OPERATIONS, self.WEIGHTS)[0]
        if op == "pay" and self.placed:
            order_id = self.placed.pop(self.rng.randrange(len(self.placed)))
            self.paid.append(order_id)
            return op, "payOrder", _body(PAY, orderId=order_id, amount=TOTAL)
        if op == "ship" and self.paid:
            order_id = self.paid.pop(self.rng.randrange(len(self.paid)))
            return (
                op,
                "shipOrder",
                _body(SHIP, orderId=order_id, carrier="UPS", trackingNumber="1Z"),
            )
        if op == "cancel" and (self.placed or self.paid):
            pool = self.placed if self.placed else self.paid
            order_id = pool.pop(self.rng.randrange(len(pool)))
            return op, "cancelOrder", _body(CANCEL, orderId=order_id, reason="changed mind")
        if op == "address" and self.placed:
            order_id = self.rng.choice(self.placed)
            return (
                op,
                "changeShippingAddress",
                _body(CHANGE_ADDRESS, orderId=order_id, shippingAddress=NEW_ADDRESS),
            )
        return "place", "placeOrder", place_body(self.customer_id)

    def record_placed(self, order_id: str) -> None:
        self.placed.append(order_id)


def _body(query: str, **input_: Any) -> JSON:
    return {"query": query, "variables": {"input": input_}}
