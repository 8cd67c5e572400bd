"""Property: any command the domain accepts can be stored and projected, on both databases.

Commands are drawn from the whole accepted space of domain/limits.py, weighted towards the
bounds and just past them (where a past-the-bound value must be refused, typed, with nothing
written). After every example the projections are live and equal a rebuild from the events.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import CommandBus
from domain.commands import CancelOrder, ChangeShippingAddress, PayOrder, PlaceOrder, ShipOrder
from domain.errors import RuleViolated
from domain.eventstore.store import EventStore
from domain.limits import (
    ID_PATTERN,
    MAX_LINES,
    MAX_ORDER_TOTAL,
    MAX_QUANTITY,
    MAX_TEXT,
    MAX_UNIT_PRICE,
)
from domain.values import Address, OrderLine
from readmodels.projector import Projector
from readmodels.queries import ReadModelQueries
from tests.support.read_models import catch_up_all, dump_after_full_rebuild, dump_read_models

CENT = Decimal("0.01")

# Every character the bounds allow: no controls (Cc) and no lone surrogates (Cs).
texts = st.text(
    st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=MAX_TEXT
) | st.sampled_from(["x" * MAX_TEXT, "é" * MAX_TEXT, "\U0001f600" * MAX_TEXT, " "])
ids = st.from_regex(ID_PATTERN, fullmatch=True) | st.just("i" * 100)
prices = st.decimals(min_value=0, max_value=MAX_UNIT_PRICE, places=2) | st.sampled_from(
    [Decimal(0), CENT, MAX_UNIT_PRICE - CENT, MAX_UNIT_PRICE, MAX_UNIT_PRICE + CENT]
)
quantities = st.integers(1, MAX_QUANTITY) | st.sampled_from([1, MAX_QUANTITY, MAX_QUANTITY + 1])
lines = st.builds(OrderLine, sku=texts, quantity=quantities, unit_price=prices)
# A full order whose total stays within the bound.
cheap_lines = st.builds(
    OrderLine,
    sku=texts,
    quantity=quantities,
    unit_price=st.decimals(
        min_value=0, max_value=MAX_ORDER_TOTAL / MAX_LINES / MAX_QUANTITY, places=2
    ),
)
addresses = st.builds(
    Address,
    line1=texts,
    city=texts,
    postal_code=texts,
    country=st.from_regex(r"[A-Z]{2}", fullmatch=True),
    line2=st.none() | texts,
)


@dataclass(frozen=True)
class Plan:
    """One order's life: placed, then maybe re-addressed, paid, shipped or cancelled."""

    order_id: str
    customer_id: str
    lines: list[OrderLine]
    address: Address
    new_address: Address | None
    pay: bool
    ship: tuple[str, str] | None
    cancel: str | None


plans = st.builds(
    Plan,
    order_id=ids,
    customer_id=ids,
    lines=st.lists(lines, min_size=1, max_size=4)
    | st.lists(cheap_lines, min_size=MAX_LINES, max_size=MAX_LINES)
    | st.lists(lines, min_size=MAX_LINES + 1, max_size=MAX_LINES + 1),
    address=addresses,
    new_address=st.none() | addresses,
    pay=st.booleans(),
    ship=st.none() | st.tuples(texts, texts),
    cancel=st.none() | texts,
)


async def _run(bus: CommandBus, store: EventStore, plan: Plan) -> None:
    head = await store.head_position()
    place = PlaceOrder(
        order_id=plan.order_id,
        customer_id=plan.customer_id,
        lines=tuple(plan.lines),
        shipping_address=plan.address,
    )
    try:
        placed = await bus.dispatch(place)
    except RuleViolated:
        # Past a bound (or the order id was drawn twice): refused, and nothing written.
        assert await store.head_position() == head
        return
    total = sum((line.line_total for line in plan.lines), Decimal(0))
    assert total <= MAX_ORDER_TOTAL
    if plan.new_address is not None:
        await bus.dispatch(
            ChangeShippingAddress(order_id=placed.order_id, shipping_address=plan.new_address)
        )
    if plan.pay:
        await bus.dispatch(PayOrder(order_id=placed.order_id, amount=total))
        if plan.ship is not None:
            carrier, tracking = plan.ship
            await bus.dispatch(
                ShipOrder(order_id=placed.order_id, carrier=carrier, tracking_number=tracking)
            )
            return
    if plan.cancel is not None:
        await bus.dispatch(CancelOrder(order_id=placed.order_id, reason=plan.cancel))


@pytest.mark.timeout(600)
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.large_base_example,
        HealthCheck.data_too_large,
    ],
)
@given(batch=st.lists(plans, min_size=1, max_size=3))
async def test_every_accepted_command_is_stored_and_projected(
    batch: list[Plan],
    engine: AsyncEngine,
    bus: CommandBus,
    store: EventStore,
    projector: Projector,
    queries: ReadModelQueries,
) -> None:
    # The fixtures live for the whole test: examples accumulate in one database, so later
    # ones also meet the sums of the earlier ones.
    for plan in batch:
        await _run(bus, store, plan)

    await catch_up_all(projector)

    statuses = await queries.projection_statuses()
    assert [(s.state, s.lag) for s in statuses] == [("live", 0)] * len(statuses)
    incremental = await dump_read_models(engine)
    assert incremental == await dump_after_full_rebuild(engine)
