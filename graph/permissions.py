"""Strawberry permission classes over the access rules of domain/access.py.

Every root field and every guarded type field carries ``allow(Action...)``, so a field
without a rule is visible at a glance (and a test checks that none is missing). A refusal is a
field error with ``extensions.code``: ``UNAUTHENTICATED`` (no token), ``FORBIDDEN`` (the
token's roles do not allow it) or ``RATE_LIMITED`` (with ``retryAfter`` seconds). Which rows a
customer may see is the read side's ``scope`` argument, from ``customer_scope``.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import Any

import strawberry
from strawberry.exceptions import StrawberryGraphQLError
from strawberry.extensions.field_extension import AsyncExtensionResolver, SyncExtensionResolver
from strawberry.permission import BasePermission, PermissionExtension

from domain import access
from domain.access import Action
from graph.context import Context

Info = strawberry.Info[Context, None]


class Allowed(BasePermission):
    """The caller's roles allow the action; for a mutation, the subject's rate allows it too.

    A refusal is raised here rather than by returning False: one instance serves every
    request, so its ``message`` cannot say what was wrong with this one."""

    def __init__(self, action: Action, *, rate_limited: bool = False, silent: bool = False) -> None:
        self.action = action
        self.rate_limited = rate_limited
        self.silent = silent  # refused: let PermissionExtension answer null, with no error

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        actor = info.context.actor
        if not access.may(actor, self.action):
            if self.silent:
                return False
            if not actor.authenticated and not actor.unrestricted:
                raise _refusal("UNAUTHENTICATED", "a bearer token is required")
            roles = ", ".join(sorted(actor.roles)) or "no role"
            raise _refusal("FORBIDDEN", f"{roles} may not {self.action.value}")
        if self.rate_limited and actor.authenticated:
            wait = info.context.services.mutation_limiter.take(actor.subject)
            if wait is not None:
                retry_after = math.ceil(wait * 1000) / 1000
                raise _refusal(
                    "RATE_LIMITED",
                    f"too many mutations for {actor.subject}: retry after {retry_after} s",
                    retryAfter=retry_after,
                )
        return True


def _refusal(code: str, message: str, **extra: object) -> StrawberryGraphQLError:
    return StrawberryGraphQLError(message, extensions={"code": code, **extra})


class Guard(PermissionExtension):
    """strawberry's PermissionExtension with one synchronous check and no coroutine of its own.

    The stock ``resolve_async`` is a coroutine wrapped around the resolver's: a frame more on
    every resume of every guarded field, and an ``await_maybe`` of a check that is never
    awaitable here. This one checks, then hands back the resolver's own awaitable (or async
    generator, for subscriptions) for strawberry to await.
    """

    def __init__(self, permission: Allowed, *, fail_silently: bool) -> None:
        super().__init__([permission], use_directives=False, fail_silently=fail_silently)
        self.permission = permission

    def resolve(self, next_: SyncExtensionResolver, source: Any, info: Info, **kwargs: Any) -> Any:
        if not self.permission.has_permission(source, info):
            return [] if self.return_empty_list else None
        return next_(source, info, **kwargs)

    def resolve_async(  # type: ignore[override]
        self, next_: AsyncExtensionResolver, source: Any, info: Info, **kwargs: Any
    ) -> Awaitable[Any] | Any:
        if not self.permission.has_permission(source, info):
            return _refused([] if self.return_empty_list else None)
        return next_(source, info, **kwargs)


async def _refused(value: Any) -> Any:
    return value


def allow(action: Action, *, fail_silently: bool = False) -> PermissionExtension:
    """The field's extension. ``fail_silently``: a refused nullable field is null instead."""
    rate_limited = action in access.MUTATIONS
    return Guard(
        Allowed(action, rate_limited=rate_limited, silent=fail_silently),
        fail_silently=fail_silently,
    )


def scope(info: Info) -> str | None:
    """The one customer whose rows this caller may read, or None for all."""
    return access.customer_scope(info.context.actor)
