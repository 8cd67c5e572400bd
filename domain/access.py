"""Who may do what: the one place where access rules live.

The GraphQL layer asks ``may`` before a field resolves (graph/permissions.py), the read side
filters rows by ``customer_scope``, and the command handlers ask ``owns`` once the order is
loaded, so that a customer acting on someone else's order meets the same OrderNotFound as
for an order that does not exist: an order's existence never leaks across customers.

Roles: ``customer`` (their own orders only), ``staff`` (everything), ``payments`` (a service
account: payOrder only). With ``AUTH=none`` every caller is ``Actor.unrestricted()``.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any

CUSTOMER, STAFF, PAYMENTS = "customer", "staff", "payments"
ROLES = (CUSTOMER, STAFF, PAYMENTS)


class Action(enum.Enum):
    PLACE_ORDER = "placeOrder"
    CHANGE_SHIPPING_ADDRESS = "changeShippingAddress"
    PAY_ORDER = "payOrder"
    SHIP_ORDER = "shipOrder"
    CANCEL_ORDER = "cancelOrder"
    READ_ORDERS = "read orders"  # order, orders, orderChanged, customer: scoped for customers
    READ_ALL_CUSTOMERS = "read every customer"  # customers, dailySales
    READ_HISTORY = "read an order's history"  # who caused each event
    READ_PROGRESS = "read projection progress"  # projections, caughtUp, projectionUpdated
    READ_PROJECTION_ERRORS = "read projection errors"
    MANAGE_PROJECTIONS = "operate projections"  # rebuild, retry, skip an event (on record)


# The actions that write: limited per subject (graph/rate_limit.py).
MUTATIONS = frozenset(
    {
        Action.PLACE_ORDER,
        Action.CHANGE_SHIPPING_ADDRESS,
        Action.PAY_ORDER,
        Action.SHIP_ORDER,
        Action.CANCEL_ORDER,
    }
)

# Which roles may perform each action. Customers' actions are further limited to their own
# orders (customer_scope for reads, owns for commands).
RULES: dict[Action, frozenset[str]] = {
    Action.PLACE_ORDER: frozenset({CUSTOMER, STAFF}),
    Action.CHANGE_SHIPPING_ADDRESS: frozenset({CUSTOMER, STAFF}),
    Action.PAY_ORDER: frozenset({STAFF, PAYMENTS}),
    Action.SHIP_ORDER: frozenset({STAFF}),
    Action.CANCEL_ORDER: frozenset({CUSTOMER, STAFF}),
    Action.READ_ORDERS: frozenset({CUSTOMER, STAFF}),
    Action.READ_ALL_CUSTOMERS: frozenset({STAFF}),
    Action.READ_HISTORY: frozenset({STAFF}),
    Action.READ_PROGRESS: frozenset({CUSTOMER, STAFF}),
    Action.READ_PROJECTION_ERRORS: frozenset({STAFF}),
    Action.MANAGE_PROJECTIONS: frozenset({STAFF}),
}


@dataclass(frozen=True, slots=True)
class Actor:
    """Who a request acts for: a verified token's subject, roles and customer id."""

    subject: str
    roles: frozenset[str] = field(default_factory=frozenset)
    customer_id: str | None = None
    # AUTH=none: nobody is identified and everything is allowed.
    unrestricted: bool = False
    authenticated: bool = True
    # When the token that named it expires (seconds since the epoch); None: never.
    expires_at: float | None = field(default=None, compare=False)

    @classmethod
    def anonymous(cls) -> Actor:
        """No token (AUTH=jwt): may see the playground and introspect, nothing else."""
        return cls("anonymous", authenticated=False)

    @classmethod
    def unrestricted_access(cls) -> Actor:
        return cls("anonymous", unrestricted=True, authenticated=False)

    @property
    def is_customer_only(self) -> bool:
        """Limited to one customer's orders: a customer without a wider role."""
        return not self.unrestricted and CUSTOMER in self.roles and STAFF not in self.roles

    def audit(self) -> dict[str, Any]:
        """What each event's metadata records about who caused it."""
        record: dict[str, Any] = {"subject": self.subject, "roles": sorted(self.roles)}
        if self.customer_id is not None:
            record["customer_id"] = self.customer_id
        if self.unrestricted:
            record["auth"] = "none"
        return record


def may(actor: Actor, action: Action) -> bool:
    return actor.unrestricted or not RULES[action].isdisjoint(actor.roles)


def customer_scope(actor: Actor) -> str | None:
    """The one customer whose rows the actor may read, or None for every customer."""
    if actor.is_customer_only:
        # A customer token without a customer id sees nothing (not everything).
        return actor.customer_id or ""
    return None


def owns(actor: Actor, customer_id: str | None) -> bool:
    """May the actor act on an order of this customer?"""
    scope = customer_scope(actor)
    return scope is None or scope == customer_id


# Idempotency keys (and the order ids derived from them) are per subject: one subject
# resending another's command id must neither get that command's result nor learn that it
# was used.
_KEY_NAMESPACE = uuid.UUID("0b6f5f0e-0f0a-4c57-9b1e-6a3c2d7e5f41")


def idempotency_key(actor: Actor | None, command_id: str) -> str:
    if actor is None or not actor.authenticated:
        return command_id
    return str(uuid.uuid5(_KEY_NAMESPACE, f"{actor.subject}\n{command_id}"))


class PlacementRefused(Exception):
    """A customer asked to place an order that is not theirs to place; ``field`` names the
    input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def check_placement(actor: Actor | None, customer_id: str, order_id_chosen: bool) -> None:
    if actor is None or not actor.is_customer_only:
        return
    if customer_id != actor.customer_id:
        raise PlacementRefused(
            "customerId",
            f"a customer places orders only for their own customer id "
            f"({actor.customer_id!r}, from the token)",
        )
    if order_id_chosen:
        # Order ids are one namespace: "already exists" would reveal another's order.
        raise PlacementRefused(
            "orderId",
            "customers do not choose order ids: leave orderId out (one is derived from "
            "commandId, so resending the same commandId retries safely)",
        )
