"""The public contract: integration events other services receive, version 1.

These types are not the domain events. Domain events may change shape (and are upcast when
read); these change only by a new version of the contract (``orders.v2``), so a consumer
written against ``orders.v1`` keeps working. They carry what another service needs and
nothing internal (no store positions, no command fingerprints, no principals).

The mapping from domain events lives in one place, ``MAPPERS``. The JSON Schema of every
message is generated from these types and committed as ``integration/orders.v1.schema.json``;
a test fails when the two differ, as it does for ``schema.graphql``.

Regenerate it with ``python -m integration.contract > integration/orders.v1.schema.json``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from domain import events
from domain.eventstore import codec
from domain.eventstore.records import RecordedEvent
from domain.values import Address, OrderLine

VERSION = "orders.v1"

# Headers of every message, beside the body's copies of the same facts.
MSG_ID = "Nats-Msg-Id"  # JetStream's de-duplication key: "<stream id>/<order version>"
EVENT_TYPE = "Orders-Event-Type"
ORDER_ID = "Orders-Order-Id"
ORDER_VERSION = "Orders-Order-Version"
CORRELATION_ID = "Orders-Correlation-Id"
CAUSATION_ID = "Orders-Causation-Id"


@dataclass(frozen=True, slots=True)
class AddressV1:
    line1: str
    line2: str | None
    city: str
    postalCode: str  # camelCase on the wire, like the GraphQL contract
    country: str


@dataclass(frozen=True, slots=True)
class OrderLineV1:
    sku: str
    quantity: int
    unitPrice: Decimal


@dataclass(frozen=True, slots=True)
class OrderPlacedV1:
    customerId: str
    lines: tuple[OrderLineV1, ...]
    total: Decimal
    shippingAddress: AddressV1
    placedAt: datetime


@dataclass(frozen=True, slots=True)
class ShippingAddressChangedV1:
    shippingAddress: AddressV1
    changedAt: datetime


@dataclass(frozen=True, slots=True)
class OrderPaidV1:
    amount: Decimal
    paidAt: datetime


@dataclass(frozen=True, slots=True)
class OrderShippedV1:
    carrier: str
    trackingNumber: str
    shippedAt: datetime


@dataclass(frozen=True, slots=True)
class OrderCancelledV1:
    reason: str
    cancelledAt: datetime


IntegrationData = (
    OrderPlacedV1 | ShippingAddressChangedV1 | OrderPaidV1 | OrderShippedV1 | OrderCancelledV1
)

# The public name of each type: "orders.v1.OrderPlaced".
TYPE_NAMES: dict[type[Any], str] = {
    cls: f"{VERSION}.{cls.__name__.removesuffix('V1')}"
    for cls in (
        OrderPlacedV1,
        ShippingAddressChangedV1,
        OrderPaidV1,
        OrderShippedV1,
        OrderCancelledV1,
    )
}


@dataclass(frozen=True, slots=True)
class IntegrationMessage:
    """One message as published: subject, headers and JSON body."""

    subject: str
    msg_id: str
    headers: dict[str, str]
    body: bytes


class UnmappedEvent(Exception):
    """A stored event that cannot become an integration event (unknown to the codec, or no
    mapping): the relay stops at it and says so, rather than skip it."""

    def __init__(self, event_type: str, position: int, why: str) -> None:
        super().__init__(f"event {event_type} at position {position}: {why}")
        self.position = position


def _address(address: Address) -> AddressV1:
    return AddressV1(
        address.line1, address.line2, address.city, address.postal_code, address.country
    )


def _line(line: OrderLine) -> OrderLineV1:
    return OrderLineV1(line.sku, line.quantity, line.unit_price)


def _placed(e: events.OrderPlaced) -> OrderPlacedV1:
    lines = tuple(_line(line) for line in e.lines)
    return OrderPlacedV1(e.customer_id, lines, e.total, _address(e.shipping_address), e.occurred_at)


def _readdressed(e: events.ShippingAddressChanged) -> ShippingAddressChangedV1:
    return ShippingAddressChangedV1(_address(e.shipping_address), e.occurred_at)


def _paid(e: events.OrderPaid) -> OrderPaidV1:
    return OrderPaidV1(e.amount, e.occurred_at)


def _shipped(e: events.OrderShipped) -> OrderShippedV1:
    return OrderShippedV1(e.carrier, e.tracking_number, e.occurred_at)


def _cancelled(e: events.OrderCancelled) -> OrderCancelledV1:
    return OrderCancelledV1(e.reason, e.occurred_at)


# The one place where domain events become integration events.
MAPPERS: dict[type[events.Event], Callable[[Any], IntegrationData]] = {
    events.OrderPlaced: _placed,
    events.ShippingAddressChanged: _readdressed,
    events.OrderPaid: _paid,
    events.OrderShipped: _shipped,
    events.OrderCancelled: _cancelled,
}


def message_id(stream_id: str, stream_version: int) -> str:
    """Deterministic per event, whatever its position: a re-sent event gets the same id."""
    return f"{stream_id}/{stream_version}"


_SUBJECT_SAFE = re.compile(r"[A-Za-z0-9_-]")
_SUBJECT_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def subject_token(value: str) -> str:
    """An order id as one subject token: ids may hold '.', '*', '>' or spaces, which NATS
    reads as structure, so every other character is written as ~XX (its UTF-8 bytes)."""
    if _SUBJECT_SAFE_TOKEN.fullmatch(value):
        return value  # generated ids (UUIDs) always: no work per character
    return "".join(
        ch if _SUBJECT_SAFE.fullmatch(ch) else "".join(f"~{b:02X}" for b in ch.encode())
        for ch in value
    )


def to_message(recorded: RecordedEvent, prefix: str) -> IntegrationMessage:
    """The integration message of one stored event (upcast first, like every reader)."""
    try:
        event = codec.decode(recorded.event_type, recorded.schema_version, recorded.data)
    except Exception as error:
        raise UnmappedEvent(recorded.event_type, recorded.position, str(error)) from error
    mapper = MAPPERS.get(type(event))
    if mapper is None:
        why = "no integration mapping (add one to integration.contract.MAPPERS)"
        raise UnmappedEvent(recorded.event_type, recorded.position, why)
    data = mapper(event)
    type_name = TYPE_NAMES[type(data)]
    msg_id = message_id(recorded.stream_id, recorded.stream_version)
    correlation = str(recorded.metadata.get("correlation_id") or "")
    causation = str(recorded.metadata.get("causation_id") or "")
    body = {
        "type": type_name,
        "messageId": msg_id,
        "orderId": event.order_id,
        "orderVersion": recorded.stream_version,
        "occurredAt": event.occurred_at.isoformat(),
        "correlationId": correlation,
        "causationId": causation,
        "data": codec.to_json(data),
    }
    headers = {
        MSG_ID: msg_id,
        EVENT_TYPE: type_name,
        ORDER_ID: event.order_id,
        ORDER_VERSION: str(recorded.stream_version),
        CORRELATION_ID: correlation,
        CAUSATION_ID: causation,
    }
    subject = f"{prefix}.{type_name.removeprefix('orders.')}.{subject_token(event.order_id)}"
    encoded = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    return IntegrationMessage(subject, msg_id, headers, encoded)


# JSON Schema of the messages, generated from the types above.

_DECIMAL = {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]+)?$"}
_TIMESTAMP = {"type": "string", "format": "date-time"}


def _schema_of(annotation: Any, defs: dict[str, Any]) -> dict[str, Any]:
    if annotation is str:
        return {"type": "string"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is Decimal:
        return dict(_DECIMAL)
    if annotation is datetime:
        return dict(_TIMESTAMP)
    origin = typing.get_origin(annotation)
    if origin is tuple:
        return {"type": "array", "items": _schema_of(typing.get_args(annotation)[0], defs)}
    if origin in (types.UnionType, typing.Union):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return {"anyOf": [_schema_of(members[0], defs), {"type": "null"}]}
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        name = annotation.__name__
        if name not in defs:
            defs[name] = {}  # placeholder first: a type may refer to itself
            hints = typing.get_type_hints(annotation)
            fields = [f.name for f in dataclasses.fields(annotation)]
            defs[name] = {
                "type": "object",
                "properties": {f: _schema_of(hints[f], defs) for f in fields},
                "required": fields,
                "additionalProperties": False,
            }
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON Schema for {annotation!r}")


def json_schema() -> dict[str, Any]:
    """The schema every message body validates against (committed; see the module doc)."""
    defs: dict[str, Any] = {}
    variants = []
    for cls, type_name in TYPE_NAMES.items():
        variants.append(
            {
                "type": "object",
                "properties": {
                    "type": {"const": type_name},
                    "messageId": {"type": "string"},
                    "orderId": {"type": "string"},
                    "orderVersion": {"type": "integer", "minimum": 1},
                    "occurredAt": dict(_TIMESTAMP),
                    "correlationId": {"type": "string"},
                    "causationId": {"type": "string"},
                    "data": _schema_of(cls, defs),
                },
                "required": [
                    "type",
                    "messageId",
                    "orderId",
                    "orderVersion",
                    "occurredAt",
                    "correlationId",
                    "causationId",
                    "data",
                ],
                "additionalProperties": False,
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:ordergraph:{VERSION}",
        "title": f"ordergraph integration events, {VERSION}",
        "oneOf": variants,
        "$defs": defs,
    }


def export_json_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(export_json_schema())
