"""Inputs of the projection operations (graph/projection_ops.py)."""

from __future__ import annotations

import strawberry

from graph.types import Position


@strawberry.input
class ProjectionInput:
    name: str


@strawberry.input
class SkipProjectionEventInput:
    name: str
    position: Position
    reason: str = strawberry.field(description="Kept on record with who and when.")
