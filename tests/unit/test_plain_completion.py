"""Plain completion (graph/plain_completion.py) answers every document exactly as graphql-core
does: the same documents through a schema with it and one without, compared whole."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import strawberry
from strawberry.schema.config import StrawberryConfig

from graph.document_cache import cached_documents
from graph.plain_completion import PlainCompletion
from graph.types import (
    COUNT_SCALAR,
    POSITION_SCALAR,
    CommandAccepted,
    Count,
    Order,
    Outcome,
    Position,
    RuleViolated,
)
from readmodels.queries import AddressView, OrderLineView, OrderView

PLACED = datetime(2026, 12, 1, 21, 40, 24, 112353, tzinfo=UTC)
VIEW = OrderView(
    id="o-1",
    customer_id="c-1",
    status="PAID",
    lines=(
        OrderLineView("SKU-1", 2, Decimal("19.99"), Decimal("39.98")),
        OrderLineView("SKU-2", 1, Decimal("0.10"), Decimal("0.10")),
    ),
    total=Decimal("40.08"),
    shipping_address=AddressView("1 Main St", None, "Springfield", "12345", "US"),
    placed_at=PLACED,
    paid_at=PLACED,
    shipped_at=None,
    cancelled_at=None,
    carrier=None,
    tracking_number=None,
    version=2,
    last_position=7,
)


@strawberry.type
class Leaf:
    name: str
    count: int


@strawberry.type
class Odd:
    """Values graphql-core has errors for."""

    required: str
    leaves: list[Leaf]
    maybe: Leaf | None = None
    number: int = 0

    @strawberry.field
    def computed(self) -> str:
        return f"{self.required}!"


def _odd(**changes: Any) -> Odd:
    odd = Odd(required="r", leaves=[Leaf(name="a", count=1)], maybe=Leaf(name="m", count=2))
    for name, value in changes.items():
        object.__setattr__(odd, name, value)  # what a buggy resolver could hand back
    return odd


@strawberry.type
class Query:
    @strawberry.field
    def order(self) -> Order:
        return Order.of(VIEW)

    @strawberry.field
    def orders(self) -> list[Order]:
        return [Order.of(VIEW), Order.of(dataclasses.replace(VIEW, id="o-2", paid_at=None))]

    @strawberry.field
    def outcome(self, accepted: bool = True) -> Outcome:
        if accepted:
            return CommandAccepted(
                command_id=strawberry.ID("c"), order_id=strawberry.ID("o"), version=1,
                position=Position(5),
            )  # fmt: skip
        return RuleViolated(rule="paid_once", message="already paid")

    @strawberry.field
    def odd(self, case: str = "fine") -> Odd:
        cases: dict[str, Odd] = {
            "fine": _odd(),
            "null required": _odd(required=None),
            "null in list": _odd(leaves=[Leaf(name="a", count=1), None]),
            "not a list": _odd(leaves=Leaf(name="a", count=1)),
            "exception": _odd(required=ValueError("boom")),
            "wrong scalar": _odd(number="many"),
            "wrong object": _odd(maybe="not a leaf"),
            "nested null": _odd(leaves=[Leaf(name=None, count=1)]),  # type: ignore[arg-type]
        }
        return cases[case]


ORDER_FIELDS = """id customerId status total version placedAt paidAt shippedAt cancelledAt
    lines { sku quantity unitPrice lineTotal }
    shippingAddress { line1 line2 city postalCode country }"""
ODD_CASES = [
    "fine",
    "null required",
    "null in list",
    "not a list",
    "exception",
    "wrong scalar",
    "wrong object",
    "nested null",
]
DOCUMENTS = [
    f"{{ order {{ {ORDER_FIELDS} }} }}",
    f"{{ orders {{ {ORDER_FIELDS} }} }}",
    "{ order { __typename id a: id lines { __typename sku } lines { quantity } } }",
    "{ order { total ... on Order { version status } } }",
    "{ order { ...F } } fragment F on Order { id total }",
    "query($x: Boolean!) { order { id total @include(if: $x) } }",
    "{ order { id shippingAddress @skip(if: true) { city } } }",
    "{ outcome { __typename ... on CommandAccepted { commandId orderId version position } } }",
    "{ outcome(accepted: false) { ... on CommandAccepted { version } ... on RuleViolated "
    "{ rule message } } }",
    *(
        f'{{ odd(case: "{case}") {{ required number computed leaves {{ name count }} '
        f"maybe {{ name }} }} }}"
        for case in ODD_CASES
    ),
    '{ odd(case: "null in list") { leaves { name } } a: odd { required } }',
]


def _schema(plain: bool) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        config=StrawberryConfig(scalar_map={Position: POSITION_SCALAR, Count: COUNT_SCALAR}),
        execution_context_class=PlainCompletion if plain else None,
        # As the app's schema: one parsed document per query text, so plans are reused.
        extensions=[cached_documents(max_tokens=2000, rules=[])],
    )


def _answer(result: Any) -> tuple[Any, list[tuple[str, Any]]]:
    errors = [(e.message, e.path) for e in result.errors or ()]
    return result.data, errors


@pytest.mark.parametrize("document", DOCUMENTS)
async def test_a_document_gets_the_answer_graphql_core_gives(document: str) -> None:
    plain, reference = _schema(plain=True), _schema(plain=False)
    for _ in range(2):  # planned on the first request, reused on the second
        variables = {"x": True} if "$x" in document else None
        ours = await plain.execute(document, variable_values=variables)
        theirs = await reference.execute(document, variable_values=variables)
        assert _answer(ours) == _answer(theirs)


async def test_the_order_of_the_bench_is_completed_by_a_plan() -> None:
    # Guards the speed-up itself: a plain selection must not quietly fall back.
    from graph import plain_completion

    plain_completion._PLANS.clear()
    schema = _schema(plain=True)
    result = await schema.execute(f"{{ order {{ {ORDER_FIELDS} }} }}")
    assert result.errors is None
    plans = [plan for _type, _nodes, plan in plain_completion._PLANS.values()]
    assert plans
    assert all(plan is not None for plan in plans)
    await schema.execute(f"{{ order {{ {ORDER_FIELDS} }} }}")  # the same document again
    assert len(plain_completion._PLANS) == len(plans)  # planned once
    assert result.data is not None
    assert result.data["order"]["lines"][0] == {
        "sku": "SKU-1",
        "quantity": 2,
        "unitPrice": "19.99",
        "lineTotal": "39.98",
    }
