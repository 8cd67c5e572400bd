"""Exact JSON encoding of events, and upcasting of old event schema versions.

Money is written as a decimal string and timestamps as RFC 3339 in UTC, so both round-trip
without loss; no float ever appears. msgspec does the work in C from the events' own
dataclasses (docs/performance.md). It writes UTC as ``Z`` where the hand-written codec before it
wrote ``+00:00``; both read back the same. An event stored under an older schema version is
brought to the current one by a chain of ``upcast_<type>_v<N>`` functions before it is decoded.

``to_json`` stays the hand-written form: command fingerprints are digests of it, and a digest
must never change for a command already recorded.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from domain import events
from domain.errors import UnknownEventType

JSON = dict[str, Any]
_E = TypeVar("_E", bound=events.Event)

EVENT_TYPES: dict[str, type[events.Event]] = {
    cls.__name__: cls
    for cls in (
        events.OrderPlaced,
        events.ShippingAddressChanged,
        events.OrderPaid,
        events.OrderShipped,
        events.OrderCancelled,
    )
}

# The schema version each event type is written with today.
CURRENT_SCHEMA: dict[str, int] = {name: 1 for name in EVENT_TYPES} | {"OrderPlaced": 2}


def upcast_order_placed_v1(data: JSON) -> JSON:
    """OrderPlaced v1 kept the address as one free-text line, comma separated:
    "line1[, line2...], city, postal code, country". v2 stores it structured."""
    parts = [part.strip() for part in str(data["shipping_address"]).split(",")]
    if len(parts) >= 4:
        *street, city, postal_code, country = parts
        line1, line2 = street[0], ", ".join(street[1:]) or None
    else:  # too short to split: keep every character in line1 rather than guess
        line1, line2, city, postal_code, country = ", ".join(parts), None, "", "", ""
    address = {
        "line1": line1,
        "line2": line2,
        "city": city,
        "postal_code": postal_code,
        "country": country,
    }
    return {**data, "shipping_address": address}


UPCASTERS: dict[tuple[str, int], Callable[[JSON], JSON]] = {
    ("OrderPlaced", 1): upcast_order_placed_v1,
}


def encode(event: events.Event) -> tuple[str, int, JSON]:
    """The stored form of an event: (type, schema version, data)."""
    name = type(event).__name__
    data = msgspec.to_builtins(_in_utc(event))
    assert isinstance(data, dict)
    for key, value in data.items():  # arrays as lists, as read back (to_builtins keeps tuples)
        if type(value) is tuple:
            data[key] = list(value)
    return name, CURRENT_SCHEMA[name], data


def decode(event_type: str, schema_version: int, data: JSON | str | bytes) -> events.Event:
    """The event of a stored row; ``data`` is its JSON text, or that text already parsed."""
    cls = EVENT_TYPES.get(event_type)
    current = CURRENT_SCHEMA.get(event_type, 0)
    if cls is None or not 1 <= schema_version <= current:
        raise UnknownEventType(event_type, schema_version)
    if schema_version == current and not isinstance(data, dict):
        try:
            return _in_utc(_TEXT_DECODERS[event_type].decode(data))
        except msgspec.ValidationError:
            raise
        except msgspec.DecodeError:
            # Text msgspec does not parse but Python's json does: lone surrogates, escaped
            # by json.dumps and stored before the limits refused them. Parsed as before.
            pass
    if not isinstance(data, dict):
        data = json.loads(data)
        assert isinstance(data, dict)
    for version in range(schema_version, current):
        data = UPCASTERS[(event_type, version)](data)
    return _in_utc(msgspec.convert(data, cls))


_TEXT_DECODERS = {name: msgspec.json.Decoder(cls) for name, cls in EVENT_TYPES.items()}


def _in_utc(event: _E) -> _E:
    """The event with its time in UTC; a naive time is refused. Stored times are UTC, and
    decoding gives them back as ``UTC`` itself."""
    at = event.occurred_at
    if at.tzinfo is UTC:
        return event
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("naive datetime: timestamps must be timezone-aware")
    return dataclasses.replace(event, occurred_at=at.astimezone(UTC))


def _no_nested_times() -> None:
    """The codec puts only ``occurred_at`` in UTC: refuse a datetime anywhere else."""

    def times(tp: Any, top: bool) -> None:
        for arg in typing.get_args(tp):
            times(arg, top=False)
        if tp is datetime and not top:
            raise TypeError("a datetime inside an event value: extend codec._in_utc")
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            for f in dataclasses.fields(tp):
                if not (top and f.name == "occurred_at"):
                    times(hints[f.name], top=False)

    for cls in EVENT_TYPES.values():
        times(cls, top=True)


_no_nested_times()


def to_json(value: object) -> Any:
    if value is None or isinstance(value, str | int):
        return value
    names = _field_names(type(value))
    if names is not None:
        return {name: to_json(getattr(value, name)) for name in names}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: timestamps must be timezone-aware")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, tuple | list):
        return [to_json(item) for item in value]
    if isinstance(value, frozenset):
        return sorted(to_json(item) for item in value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def to_json_without(value: object, left_out: Collection[str]) -> dict[str, Any]:
    """A dataclass as ``to_json`` has it, but for the fields named (not even encoded)."""
    names = _field_names(type(value))
    if names is None:
        raise TypeError(f"not a dataclass: {type(value).__name__}")
    return {name: to_json(getattr(value, name)) for name in names if name not in left_out}


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    """A dataclass's field names (looked up once: ``dataclasses.fields`` is slow), else None."""
    try:
        return _FIELD_NAMES[cls]
    except KeyError:
        names = None
        if dataclasses.is_dataclass(cls):
            names = tuple(f.name for f in dataclasses.fields(cls))
        return _FIELD_NAMES.setdefault(cls, names)
