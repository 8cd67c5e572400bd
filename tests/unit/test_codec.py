"""Exact serialization and upcasting of events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from domain import events
from domain.eventstore import codec
from domain.values import Address, OrderLine
from tests.support.factories import ADDRESS
from tests.support.old_rows import OLD_AT, OLD_EVENTS, OLD_ROWS


def test_money_and_time_round_trip_without_loss() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    placed = events.OrderPlaced(
        order_id="o-1",
        occurred_at=at,
        customer_id="c-1",
        lines=(OrderLine("A", 3, Decimal("0.10")), OrderLine("B", 1, Decimal("1e-2"))),
        shipping_address=ADDRESS,
        total=Decimal("0.31"),
    )

    event_type, version, data = codec.encode(placed)
    stored = json.loads(json.dumps(data))  # what a JSON column gives back
    decoded = codec.decode(event_type, version, stored)

    assert decoded == placed
    assert decoded.occurred_at.tzinfo is UTC
    assert "float" not in {type(v).__name__ for v in data.values()}
    assert data["total"] == "0.31"


def test_an_order_placed_v1_with_a_free_text_address_is_upcast() -> None:
    v1 = {
        "order_id": "o-1",
        "occurred_at": "2024-03-01T10:00:00+00:00",
        "customer_id": "c-1",
        "lines": [{"sku": "A", "quantity": 1, "unit_price": "5.00"}],
        "shipping_address": "221B Baker Street, Flat 2, London, NW1 6XE, GB",
        "total": "5.00",
    }

    placed = codec.decode("OrderPlaced", 1, v1)

    assert isinstance(placed, events.OrderPlaced)
    assert placed.shipping_address == Address(
        line1="221B Baker Street",
        line2="Flat 2",
        city="London",
        postal_code="NW1 6XE",
        country="GB",
    )


def test_an_unsplittable_v1_address_keeps_its_text() -> None:
    data = codec.upcast_order_placed_v1({"shipping_address": "somewhere, far"})
    assert data["shipping_address"]["line1"] == "somewhere, far"


def test_events_stored_by_the_old_codec_decode_as_before_from_text_and_from_parsed_json() -> None:
    for (event_type, version, text), want in zip(OLD_ROWS, OLD_EVENTS, strict=True):
        from_text = codec.decode(event_type, version, text)  # the projector reads text
        from_parsed = codec.decode(event_type, version, json.loads(text))  # the store, dicts
        assert from_text == from_parsed == want
        assert from_text.occurred_at.tzinfo is UTC
        # Written again, only the spelling of UTC changes: the same JSON otherwise.
        again = codec.encode(want)[2]
        old = json.loads(text)
        assert again.pop("occurred_at") == "2026-03-04T05:06:07.890123Z"
        assert old.pop("occurred_at") == "2026-03-04T05:06:07.890123+00:00"
        assert again == old  # lists and all: what is in memory is what is read back


def test_old_text_that_only_pythons_json_reads_still_decodes() -> None:
    # Before limits refused them, a lone surrogate could be stored (SQLite keeps any text);
    # json.dumps escapes it, and msgspec's parser refuses the escape.
    text = OLD_ROWS[4][2].replace("changed mind", "changed \\ud800 mind")
    cancelled = codec.decode("OrderCancelled", 1, text)
    assert isinstance(cancelled, events.OrderCancelled)
    assert cancelled.reason == "changed \ud800 mind"


def test_times_are_stored_in_utc_and_naive_times_are_refused() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
    _, _, data = codec.encode(events.OrderPaid("o-1", at, Decimal("1.00")))
    assert data["occurred_at"] == "2026-01-02T08:04:05Z"

    stored = '{"order_id": "o-1", "occurred_at": "2026-01-02T03:04:05-05:00", "amount": "1.00"}'
    decoded = codec.decode("OrderPaid", 1, stored)
    assert decoded.occurred_at == at
    assert decoded.occurred_at.tzinfo is UTC

    naive = datetime(2026, 1, 2, 3, 4, 5)
    with pytest.raises(ValueError, match="naive"):
        codec.encode(events.OrderPaid("o-1", naive, Decimal("1.00")))
    with pytest.raises(ValueError, match="naive"):
        codec.decode("OrderPaid", 1, stored.replace("-05:00", ""))


def test_money_is_stored_as_its_exact_decimal_text_and_never_read_through_a_float() -> None:
    amounts = ["0.10", "1E+2", "123456789012345678901234567890.12", "-0.00", "1E-7"]
    for amount in amounts:
        _, _, data = codec.encode(events.OrderPaid("o-1", OLD_AT, Decimal(amount)))
        assert data["amount"] == str(Decimal(amount))
        decoded = codec.decode("OrderPaid", 1, json.dumps(data))
        assert isinstance(decoded, events.OrderPaid)
        assert str(decoded.amount) == str(Decimal(amount))
    # A JSON number where money belongs was never written; it would be read exactly.
    number = '{"order_id": "o-1", "occurred_at": "2026-01-02T03:04:05Z", "amount": 0.1}'
    paid = codec.decode("OrderPaid", 1, number)
    assert isinstance(paid, events.OrderPaid)
    assert paid.amount == Decimal("0.1")


def test_a_row_missing_a_field_fails_instead_of_decoding_with_none() -> None:
    with pytest.raises(ValueError, match="amount"):
        codec.decode("OrderPaid", 1, '{"order_id": "o-1", "occurred_at": "2026-01-02T03:04:05Z"}')
