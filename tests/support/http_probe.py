"""A raw HTTP probe of the GraphQL endpoint, for what a client library would not send."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import strawberry

from graph.http import schema_extensions


@dataclass
class Probe:
    """What the toy resolvers report back to the test."""

    bumps: int = 0
    generator_finished: asyncio.Event = field(default_factory=asyncio.Event)


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        return f"hello {name}"

    @strawberry.field
    def node(self) -> Node:
        return Node(name="root")

    @strawberry.field
    def broken(self) -> str | None:
        raise RuntimeError("secret database detail")


@strawberry.type
class Mutation:
    @strawberry.mutation
    def bump(self, info: strawberry.Info[Probe]) -> int:
        info.context.bumps += 1
        return info.context.bumps


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(
        self, info: strawberry.Info[Probe], up_to: int, hold: bool = False
    ) -> AsyncIterator[int]:
        probe = info.context
        try:
            for i in range(1, up_to + 1):
                yield i
            if hold:  # stay open until the client unsubscribes
                await asyncio.Event().wait()
        finally:
            probe.generator_finished.set()

    @strawberry.subscription
    async def failing(self) -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("secret subscription detail")


@strawberry.type
class Node:
    name: str

    @strawberry.field
    def child(self) -> Node:
        return Node(name=self.name + ".child")


SCHEMA = strawberry.Schema(
    Query,
    Mutation,
    Subscription,
    extensions=schema_extensions(max_depth=4, max_aliases=3, max_tokens=200),
)
