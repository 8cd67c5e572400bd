"""Value objects shared by commands, events and the aggregate."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

CENT = Decimal("0.01")


def money(amount: Decimal) -> Decimal:
    """Money is Decimal with two places; quantizing keeps "19" and "19.00" equal and alike."""
    return amount.quantize(CENT)


@dataclass(frozen=True, slots=True)
class Address:
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str | None = None


@dataclass(frozen=True, slots=True)
class OrderLine:
    sku: str
    quantity: int
    unit_price: Decimal

    @property
    def line_total(self) -> Decimal:
        return money(self.unit_price * self.quantity)
