"""Mutations: each builds exactly one command, dispatches it, and maps the outcome.

Expected failures are union members; anything else raised is a bug and reaches the client
masked (see graph/http.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import strawberry

from domain import access, errors
from domain.access import Action, Actor
from domain.commands import Command
from graph import inputs
from graph.context import Context
from graph.permissions import allow
from graph.runtime import metrics
from graph.types import (
    CancelOrderResult,
    ChangeShippingAddressResult,
    CommandAccepted,
    InvalidInput,
    OrderNotFound,
    Outcome,
    PayOrderResult,
    PlaceOrderResult,
    Position,
    RuleViolated,
    ShipOrderResult,
    VersionConflict,
)

I = TypeVar("I")  # noqa: E741

# The command each input builder makes: the "command" label of the commands metric.
_command_names: dict[object, str] = {
    inputs.place_order: "PlaceOrder",
    inputs.change_shipping_address: "ChangeShippingAddress",
    inputs.pay_order: "PayOrder",
    inputs.ship_order: "ShipOrder",
    inputs.cancel_order: "CancelOrder",
}


async def dispatch(
    info: strawberry.Info[Context, None], build: Callable[[I, Actor], Command], data: I
) -> Outcome:
    outcome = await _dispatch(info, build, data)
    name = type(outcome).__name__
    metrics.COMMANDS.labels(_command_names.get(build, "-"), name).inc()
    if info.context.request is not None:
        info.context.request.outcome = name
    return outcome


async def _dispatch(
    info: strawberry.Info[Context, None], build: Callable[[I, Actor], Command], data: I
) -> Outcome:
    try:
        command = build(data, info.context.actor)
    except inputs.InputError as error:
        return InvalidInput(field=error.field, message=error.message)
    except access.PlacementRefused as error:
        return InvalidInput(field=error.field, message=error.message)
    try:
        result = await info.context.services.bus.dispatch(command)
    except errors.RuleViolated as error:
        return RuleViolated(rule=error.rule, message=str(error))
    except errors.OrderNotFound as error:
        return OrderNotFound(order_id=strawberry.ID(error.order_id), message=str(error))
    except errors.VersionConflict as error:
        return VersionConflict(
            expected_version=error.expected or 0, actual_version=error.actual, message=str(error)
        )
    except errors.CommandIdReused as error:
        return InvalidInput(field="commandId", message=str(error))
    except errors.AppendRefused:
        # The edge lets through only what the database can store; should a value slip past
        # it, the client still learns its command was not taken (the detail is in the log).
        return InvalidInput(field="input", message="the database refused this command's data")
    return CommandAccepted(
        command_id=strawberry.ID(result.command_id),
        order_id=strawberry.ID(result.order_id),
        version=result.version,
        position=Position(result.position),
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Place a new order (command PlaceOrder).",
        extensions=[allow(Action.PLACE_ORDER)],
    )
    async def place_order(
        self, info: strawberry.Info[Context, None], input: inputs.PlaceOrderInput
    ) -> PlaceOrderResult:
        return await dispatch(info, inputs.place_order, input)

    @strawberry.mutation(
        description="Change where an unshipped order goes.",
        extensions=[allow(Action.CHANGE_SHIPPING_ADDRESS)],
    )
    async def change_shipping_address(
        self, info: strawberry.Info[Context, None], input: inputs.ChangeShippingAddressInput
    ) -> ChangeShippingAddressResult:
        return await dispatch(info, inputs.change_shipping_address, input)

    @strawberry.mutation(
        description="Pay an order; the amount must equal its total.",
        extensions=[allow(Action.PAY_ORDER)],
    )
    async def pay_order(
        self, info: strawberry.Info[Context, None], input: inputs.PayOrderInput
    ) -> PayOrderResult:
        return await dispatch(info, inputs.pay_order, input)

    @strawberry.mutation(
        description="Ship a paid order.",
        extensions=[allow(Action.SHIP_ORDER)],
    )
    async def ship_order(
        self, info: strawberry.Info[Context, None], input: inputs.ShipOrderInput
    ) -> ShipOrderResult:
        return await dispatch(info, inputs.ship_order, input)

    @strawberry.mutation(
        description="Cancel an order that has not shipped.",
        extensions=[allow(Action.CANCEL_ORDER)],
    )
    async def cancel_order(
        self, info: strawberry.Info[Context, None], input: inputs.CancelOrderInput
    ) -> CancelOrderResult:
        return await dispatch(info, inputs.cancel_order, input)
