"""The strawberry schema: queries, mutations, subscriptions and their extensions."""

from __future__ import annotations

import strawberry
from strawberry.schema.config import StrawberryConfig

from graph.http import schema_extensions
from graph.mutations import Mutation
from graph.queries import Query
from graph.staleness import StaleFields
from graph.subscriptions import Subscription
from graph.types import POSITION_SCALAR, Position


def build_schema(
    *, max_depth: int = 12, max_aliases: int = 30, max_tokens: int = 2000
) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map={Position: POSITION_SCALAR}),
        extensions=[
            *schema_extensions(max_depth=max_depth, max_aliases=max_aliases, max_tokens=max_tokens),
            StaleFields,
        ],
    )


def export_sdl() -> str:
    """The SDL that schema.graphql must equal."""
    return build_schema().as_str() + "\n"
