"""Completing plain objects in one step instead of graphql-core's field-by-field walk.

graphql-core completes an object by resolving, then completing, each selected field on its
own: a resolve info, a resolver call and a completion per field, a dozen calls each. An
``order`` of twenty fields spent most of its execution there. For an object whose selected
fields are all plain (strawberry fields without a resolver, arguments or extensions; leaves,
lists and plain objects below them), the document fixes the whole shape, so the shape is
compiled once per document into a function that reads the attributes and serializes the
leaves directly.

It applies only where it cannot differ from graphql-core:
- no directives and no fragment spreads anywhere in the selection (inline fragments are
  followed), and no middleware (schema extensions that wrap resolvers);
- the documents are the cached ones (graph/document_cache.py), so a selection's nodes are the
  same objects from request to request, which is what plans are keyed on;
- anything that would be an error in graphql-core (a null for a non-null field, a value a
  scalar refuses, an exception as a value, a list that is not a list) makes the object be
  completed by graphql-core after all, which raises exactly that error. Reading dataclass
  attributes has no side effects, so reading them twice changes nothing.

``tests/unit/test_plain_completion.py`` runs documents through both and compares the answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from graphql import (
    FieldNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    Undefined,
    is_abstract_type,
)
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

MAX_PLANS = 1024  # compiled shapes kept: a few per cached document

Completer = Callable[[Any, GraphQLResolveInfo[Any]], Any]


class _NotPlain(Exception):
    """This value is for graphql-core to complete (it raises the right error)."""


class PlainCompletion(StrawberryGraphQLCoreExecutionContext):
    """strawberry's execution context, completing plain objects with compiled plans."""

    def complete_object_value(
        self,
        return_type: GraphQLObjectType,
        field_details_list: Any,
        info: GraphQLResolveInfo[Any],
        path: Any,
        result: Any,
        position_context: Any,
    ) -> Any:
        manager = self.middleware_manager
        if manager is None or not manager.middlewares:
            nodes = tuple(details.node for details in field_details_list)
            plan = _plan(self.schema, return_type, nodes)
            if plan is not None:
                try:
                    return plan(result, info)
                except Exception:  # _NotPlain, or a value graphql-core has an error for
                    pass
        return super().complete_object_value(
            return_type, field_details_list, info, path, result, position_context
        )


# By the type (of one schema) and the selection's nodes (of one cached document), by identity.
_Key = tuple[int, tuple[int, ...]]
_PLANS: dict[_Key, tuple[GraphQLObjectType, tuple[FieldNode, ...], Completer | None]] = {}


def _plan(
    schema: GraphQLSchema, return_type: GraphQLObjectType, nodes: tuple[FieldNode, ...]
) -> Completer | None:
    key = (id(return_type), tuple(id(node) for node in nodes))
    found = _PLANS.get(key)
    # The type and nodes are kept with the plan, so their ids cannot be reused while it is
    # cached; checked all the same.
    if (
        found is not None
        and found[0] is return_type
        and all(a is b for a, b in zip(found[1], nodes, strict=True))
    ):
        return found[2]
    plan = _object(schema, return_type, nodes)
    if len(_PLANS) >= MAX_PLANS:
        _PLANS.clear()
    _PLANS[key] = (return_type, nodes, plan)
    return plan


def _object(
    schema: GraphQLSchema, object_type: GraphQLObjectType, nodes: Sequence[FieldNode]
) -> Completer | None:
    """The plan of an object's selection, or None if it is not plain."""
    groups: dict[str, list[FieldNode]] = {}
    for node in nodes:
        if node.directives or node.selection_set is None:
            return None
        if not _collect(schema, object_type, node.selection_set.selections, groups):
            return None
    steps: list[tuple[str, Callable[[Any, str], Any] | None, str, Completer | None]] = []
    for key, fields in groups.items():
        name = fields[0].name.value
        if any(f.name.value != name or f.arguments or f.directives for f in fields):
            return None
        if name == "__typename":
            steps.append((key, None, object_type.name, None))
            continue
        field = object_type.fields.get(name)
        definition = None if field is None else field.extensions.get("strawberry-definition")
        if (
            field is None
            or field.args
            or not getattr(field.resolve, "_is_default", False)
            or definition is None
            or definition.base_resolver is not None
            or definition.extensions
        ):
            return None
        completer = _value(schema, field.type, fields)
        if completer is None:
            return None
        steps.append((key, definition.default_resolver, definition.python_name, completer))
    is_type_of = object_type.is_type_of

    def complete(result: Any, info: GraphQLResolveInfo[Any]) -> dict[str, Any]:
        if is_type_of is not None and not is_type_of(result, info):
            raise _NotPlain
        out = {}
        for key, resolve, attribute, completer in steps:
            if resolve is None:  # __typename
                out[key] = attribute
            else:
                assert completer is not None
                out[key] = completer(resolve(result, attribute), info)
        return out

    return complete


def _collect(
    schema: GraphQLSchema,
    object_type: GraphQLObjectType,
    selections: Sequence[Any],
    groups: dict[str, list[FieldNode]],
) -> bool:
    """The fields selected on ``object_type``, by response key, in document order (as
    graphql-core collects them); False where that takes more than following fields and
    inline fragments without directives."""
    for selection in selections:
        if selection.directives:
            return False
        if isinstance(selection, FieldNode):
            key = selection.alias.value if selection.alias else selection.name.value
            groups.setdefault(key, []).append(selection)
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            if condition is not None:
                named = schema.get_type(condition.name.value)
                applies = named is object_type or (
                    is_abstract_type(named) and schema.is_sub_type(named, object_type)
                )
                if not applies:
                    continue
            if not _collect(schema, object_type, selection.selection_set.selections, groups):
                return False
        else:  # a fragment spread
            return False
    return True


def _value(
    schema: GraphQLSchema, value_type: GraphQLOutputType, nodes: Sequence[FieldNode]
) -> Completer | None:
    if isinstance(value_type, GraphQLNonNull):
        strict = _value(schema, value_type.of_type, nodes)
        if strict is None:
            return None
        complete_strict: Completer = strict

        def non_null(value: Any, info: GraphQLResolveInfo[Any]) -> Any:
            if value is None:
                raise _NotPlain
            return complete_strict(value, info)

        return non_null
    inner = _nullable(schema, value_type, nodes)
    if inner is None:
        return None

    def nullable(value: Any, info: GraphQLResolveInfo[Any]) -> Any:
        return None if value is None else inner(value, info)

    return nullable


def _nullable(
    schema: GraphQLSchema, value_type: GraphQLOutputType, nodes: Sequence[FieldNode]
) -> Completer | None:
    if isinstance(value_type, GraphQLScalarType | GraphQLEnumType):
        coerce = value_type.coerce_output_value

        def leaf(value: Any, _info: GraphQLResolveInfo[Any]) -> Any:
            if isinstance(value, Exception):  # graphql-core raises it, located
                raise _NotPlain
            coerced = coerce(value)
            if coerced is None or coerced is Undefined:
                raise _NotPlain
            return coerced

        return leaf
    if isinstance(value_type, GraphQLList):
        item = _value(schema, value_type.of_type, nodes)
        if item is None:
            return None

        def items(value: Any, info: GraphQLResolveInfo[Any]) -> list[Any]:
            if not isinstance(value, list | tuple):
                raise _NotPlain
            return [item(element, info) for element in value]

        return items
    if isinstance(value_type, GraphQLObjectType):
        return _object(schema, value_type, nodes)
    return None  # an interface or union: its runtime type is graphql-core's to find
