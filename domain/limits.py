"""What the domain accepts: the one definition of every bound.

The edge (graph/inputs.py) reports a value outside these bounds as ``InvalidInput`` naming the
field; the aggregate (domain/order.py) refuses it as ``RuleViolated``, whoever sends the
command. Every column that stores such a value is sized from here (readmodels/tables.py,
migrations/versions/0004_bounded_columns.py), so anything accepted can be stored and projected
on both databases.

Money sums in the read models stay exact and fit ``SUM_PRECISION`` digits: a customer's or a
day's total is at most ``MAX_ORDER_TOTAL`` times the number of orders, which a BIGINT position
caps below 2**63, and 2**63 * 10**7 < 10**26, below the 28 significant digits that both the
NUMERIC(28, 2) columns and Python's default decimal context hold.
"""

from __future__ import annotations

import re
from decimal import Decimal

MAX_LINES = 100
MAX_QUANTITY = 1000
MONEY_PLACES = 2
MAX_UNIT_PRICE = Decimal("1000000.00")
MAX_LINE_TOTAL = Decimal("10000000.00")
MAX_ORDER_TOTAL = Decimal("10000000.00")  # a payment equals its order's total
MAX_ID = 100  # order, customer and command ids (ASCII, see graph/inputs.py)
MAX_TEXT = 200  # sku, address lines, carrier, tracking number, reason

# Digits of the NUMERIC columns: one order's money, and sums over orders (see above).
MONEY_PRECISION = 14
SUM_PRECISION = 28

# Ids are short ASCII words, so that they are safe in URLs, logs and every column.
ID_PATTERN = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:\-]{{0,{MAX_ID - 1}}}")

# C0 and C1 control characters (NUL included) and lone surrogates: PostgreSQL text refuses
# NUL and surrogates, and no name or address legitimately holds any of them.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def id_problem(value: str) -> str | None:
    if ID_PATTERN.fullmatch(value) is None:
        return f"must be 1-{MAX_ID} letters, digits or . _ : - (starting with a letter or digit)"
    return None


def text_problem(value: str) -> str | None:
    """Why ``value`` is not acceptable text (after the edge strips it), or None."""
    if not value:
        return "must not be empty"
    if len(value) > MAX_TEXT:
        return f"must be at most {MAX_TEXT} characters"
    if (found := _FORBIDDEN.search(value)) is not None:
        return f"must not contain control characters or lone surrogates (found {found[0]!r})"
    return None


def money_problem(value: Decimal, maximum: Decimal) -> str | None:
    """Why ``value`` is not an amount of money within ``maximum`` either side of 0, or None.
    (The sign is a business rule: the aggregate decides it.)

    Decided from the digits and exponent alone: arithmetic on a value such as 1e1000000 would
    raise decimal.Overflow instead of answering.
    """
    if not value.is_finite():
        return "must be a finite decimal number"
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    significant = "".join(map(str, digits)).rstrip("0")
    if not significant:
        return None  # zero, whatever its exponent
    if exponent + len(digits) - len(significant) < -MONEY_PLACES:
        return f"must have at most {MONEY_PLACES} decimal places"
    if value.adjusted() > maximum.adjusted() or abs(value) > maximum:
        return f"must be at most {maximum} in size"
    return None
