"""Database outages as a typed, retryable answer instead of a masked bug.

An error whose cause is an outage (domain/eventstore/outages.py) reaches the client as "Service
unavailable" with ``extensions.code`` SERVICE_UNAVAILABLE and ``extensions.retryAfter``
seconds; over HTTP the response is a 503 with ``Retry-After``. Over WebSocket the same error
arrives in the operation's payload. Nothing about it needs masking: it names no internals.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from graphql import GraphQLError

from domain.eventstore.outages import is_outage

logger = logging.getLogger("ordergraph.graph")

SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
RETRY_AFTER_SECONDS = 2
MESSAGE = f"Service unavailable: the database cannot be reached; retry in {RETRY_AFTER_SECONDS} s."


def caused_by_outage(error: GraphQLError) -> bool:
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError) and is_outage(original)


def unavailable(error: GraphQLError) -> GraphQLError:
    """The client's version of an outage error: short, typed, with when to try again."""
    logger.warning("database unavailable at %s: %r", error.path, error.original_error)
    return GraphQLError(
        MESSAGE,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions={"code": SERVICE_UNAVAILABLE, "retryAfter": RETRY_AFTER_SECONDS},
    )


def any_unavailable(errors: Iterable[GraphQLError] | None) -> bool:
    return any((e.extensions or {}).get("code") == SERVICE_UNAVAILABLE for e in errors or ())
