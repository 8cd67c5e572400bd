"""The strawberry schema: queries, mutations, subscriptions and their extensions."""

from __future__ import annotations

import logging
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from graph.http import schema_extensions
from graph.mutations import Mutation
from graph.plain_completion import PlainCompletion
from graph.projection_ops import ProjectionMutation
from graph.queries import Query
from graph.staleness import StaleFields
from graph.subscriptions import Subscription
from graph.types import COUNT_SCALAR, POSITION_SCALAR, Count, Position

logger = logging.getLogger("ordergraph.graph")


class Schema(strawberry.Schema):
    hide_suggestions = False  # production: no "Did you mean ...?" in variable errors either

    def _get_custom_context_kwargs(
        self, operation_extensions: dict[str, Any] | None = None, *, sync: bool = False
    ) -> dict[str, Any]:
        # The keyword arguments strawberry passes to graphql-core's execute(); it has no
        # setting of its own for hide_suggestions.
        kwargs = super()._get_custom_context_kwargs(operation_extensions, sync=sync)
        if self.hide_suggestions:
            kwargs["hide_suggestions"] = True
        return kwargs

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Strawberry logs every error at ERROR with a traceback, including a client's typo
        or a refused abusive query: log noise that anyone can cause. Unexpected errors are
        logged in full where they are masked (graph/http.py); the rest is the client's."""
        for error in errors:
            logger.debug("GraphQL error returned to the client: %s", error.message)


def build_schema(
    *,
    max_depth: int = 12,
    max_aliases: int = 30,
    max_tokens: int = 2000,
    max_cost: int = 25_000,
    tracing: bool = False,
    production: bool = False,
) -> strawberry.Schema:
    """``production``: no introspection and no field suggestions in errors."""
    traced = []
    if tracing:
        from graph.runtime.tracing import schema_extensions as tracing_extensions

        traced = tracing_extensions()
    schema = Schema(
        query=Query,
        mutation=merge_types("Mutation", (Mutation, ProjectionMutation)),
        subscription=Subscription,
        config=StrawberryConfig(scalar_map={Position: POSITION_SCALAR, Count: COUNT_SCALAR}),
        execution_context_class=PlainCompletion,
        extensions=[
            *schema_extensions(
                max_depth=max_depth,
                max_aliases=max_aliases,
                max_tokens=max_tokens,
                production=production,
                max_cost=max_cost,
            ),
            StaleFields,
            *traced,
        ],
    )
    schema.hide_suggestions = production
    return schema


def export_sdl() -> str:
    """The SDL that schema.graphql must equal."""
    return build_schema().as_str() + "\n"
