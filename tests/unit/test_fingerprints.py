"""A command's fingerprint is stored with its id (the idempotency record) and compared when the
id comes again, maybe after an upgrade: the same command must keep the same fingerprint."""

from __future__ import annotations

from decimal import Decimal

from domain import commands
from domain.access import Actor
from domain.handlers import fingerprint
from domain.values import Address, OrderLine

ADDRESS = Address(
    line1="1 Main St", city="Springfield", postal_code="12345", country="US", line2="Flat 2 ü"
)
PLACE = commands.PlaceOrder(
    order_id="o-1",
    command_id="c-1",
    correlation_id="r-1",
    customer_id="cust-1",
    lines=(OrderLine("SKU-1", 2, Decimal("19.99")), OrderLine("SKU-2", 1, Decimal("0.10"))),
    shipping_address=ADDRESS,
)
PAY = commands.PayOrder(order_id="o-1", amount=Decimal("40.08"), expected_version=3)


def test_a_command_keeps_the_fingerprint_stored_for_it_by_earlier_releases() -> None:
    assert fingerprint(PLACE) == "c41ca643a571001db02b571d4a7481e81ee78dc6815f06baf00d48dd1eb91c13"
    assert fingerprint(PAY) == "fa842f7ab59a1e0b3cd71703e23ad9c2257120c8702437814142cfeca052db2a"


def test_labels_and_who_asks_are_not_part_of_a_fingerprint() -> None:
    relabelled = commands.PayOrder(
        order_id="o-1",
        amount=Decimal("40.08"),
        expected_version=3,
        command_id="another",
        correlation_id="elsewhere",
        actor=Actor("someone", frozenset({"staff"})),
    )
    assert fingerprint(relabelled) == fingerprint(PAY)
    assert fingerprint(
        commands.PayOrder(order_id="o-1", amount=Decimal("40.09"), expected_version=3)
    ) != (fingerprint(PAY))
