"""Puts the fields answered stale (``atLeast`` not reached in time) into ``extensions``."""

from __future__ import annotations

from typing import Any

from strawberry.extensions import SchemaExtension

from graph.context import Context


class StaleFields(SchemaExtension):
    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        if isinstance(context, Context) and context.stale:
            return {"stale": list(context.stale)}
        return {}
