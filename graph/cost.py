"""A query cost limit: how many values a document can make the server produce, refused before
execution when it is too many.

Depth, alias and token limits each bound one dimension; the size of an answer is their
product. Thirty aliased ``orders(first: 100)`` pass all three and make a 1.2 MB answer. Here a
field costs 1 plus what it selects, times the number of items it can return: ``first`` (100
when it is a variable: its worst case) for connections, their default page size without it,
the bound of every other list (an order's lines, the days of ``dailySales``, the projections),
and for introspection the schema's own counts (types, and the fields, arguments, enum
values... a type has on average). Fragments are costed once each, so the walk is linear in the
document; the depth limit's blind spot, introspection, is counted like any other field.

It runs after validation, because ``first`` is often a variable: priced at its worst, a page
size chosen by the client would be refused. The price depends on nothing else, so each
document keeps its verdicts (``CostVerdicts``, graph/document_cache.py) by operation and by the
values of the variables that set ``first``: most documents have none, and are priced once.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    is_enum_type,
    is_input_object_type,
    is_interface_type,
    is_object_type,
    is_union_type,
)

from domain.limits import MAX_LINES
from readmodels.queries import MAX_HISTORY, MAX_PAGE

DEFAULT_PAGE = 20
# Lists of the schema whose length is bounded elsewhere (domain/limits.py, graph/queries.py).
DATA_LISTS: Mapping[str, int] = {
    "lines": MAX_LINES,
    "history": MAX_HISTORY,
    "dailySales": 366,
    "projections": 3,
}
CONNECTIONS = frozenset({"orders", "customers"})


@functools.lru_cache(maxsize=8)
def introspection_lists(schema: GraphQLSchema) -> dict[str, float]:
    """How many items each introspection list returns in this schema: the number of types,
    and per type (or per field, for arguments) the mean over all of them. The standard
    introspection query then costs about the values it returns; nesting still multiplies."""
    types = list(schema.type_map.values())
    fields = [
        f for t in types if is_object_type(t) or is_interface_type(t) for f in t.fields.values()
    ]

    def per_type(count: Callable[[Any], int]) -> float:
        return sum(map(count, types)) / len(types)

    return {
        "types": len(types),
        "fields": len(fields) / len(types),
        "inputFields": per_type(lambda t: len(t.fields) if is_input_object_type(t) else 0),
        "enumValues": per_type(lambda t: len(t.values) if is_enum_type(t) else 0),
        "interfaces": per_type(lambda t: len(t.interfaces) if is_object_type(t) else 0),
        "possibleTypes": per_type(lambda t: len(t.types) if is_union_type(t) else 0),
        "args": sum(len(f.args) for f in fields) / max(1, len(fields)),
        "directives": len(schema.directives),
        "locations": 19,  # the directive locations GraphQL defines
    }


class QueryCost:
    """The cost of one operation of a document; ``variables`` give ``first`` its value."""

    def __init__(
        self,
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: Mapping[str, Any] | None,
    ) -> None:
        self._introspection = introspection_lists(schema)
        self._variables = variables or {}
        self._fragment_nodes = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self._fragments: dict[tuple[str, bool], float] = {}
        self._visiting: set[str] = set()
        self._defaults: dict[str, int] = {}
        self.read: set[str] = set()  # the variables the cost depended on

    def of(self, operation: OperationDefinitionNode) -> int:
        # A variable the request leaves out takes its default: price what will run.
        self._defaults = {
            definition.variable.name.value: int(definition.default_value.value)
            for definition in operation.variable_definitions or ()
            if isinstance(definition.default_value, IntValueNode)
        }
        return math.ceil(self._cost(operation.selection_set, introspection=False))

    def _cost(self, selections: SelectionSetNode | None, *, introspection: bool) -> float:
        if selections is None:
            return 0
        total = 0.0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                inner = introspection or selection.name.value.startswith("__")
                children = self._cost(selection.selection_set, introspection=inner)
                total += self._items(selection, inner) * (1 + children)
            elif isinstance(selection, InlineFragmentNode):
                total += self._cost(selection.selection_set, introspection=introspection)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._spread(selection.name.value, introspection)
        return total

    def _spread(self, name: str, introspection: bool) -> float:
        key = (name, introspection)
        if key not in self._fragments:
            fragment = self._fragment_nodes.get(name)
            if fragment is None or name in self._visiting:
                return 0  # unknown or cyclic: validation reports it
            self._visiting.add(name)
            self._fragments[key] = self._cost(fragment.selection_set, introspection=introspection)
            self._visiting.discard(name)
        return self._fragments[key]

    def _items(self, field: FieldNode, introspection: bool) -> float:
        name = field.name.value
        if introspection:
            return self._introspection.get(name, 1)
        first: Any = next((a.value for a in field.arguments or () if a.name.value == "first"), None)
        if isinstance(first, VariableNode):
            variable = first.name.value
            self.read.add(variable)
            first = self._variables.get(variable, self._defaults.get(variable))
            if first is None:
                return DEFAULT_PAGE if name in CONNECTIONS else 1
            return max(0, min(int(first), MAX_PAGE)) if isinstance(first, int) else MAX_PAGE
        if isinstance(first, IntValueNode):
            return max(0, min(int(first.value), MAX_PAGE))
        if name in CONNECTIONS:
            return DEFAULT_PAGE
        return DATA_LISTS.get(name, 1)


def _priced(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    max_cost: int,
) -> tuple[GraphQLError | None, frozenset[str]]:
    """The refusal (or None) and the variables the price depended on."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    if len(operations) != 1:
        return None, frozenset()  # no such operation, or ambiguous: refused elsewhere
    pricing = QueryCost(schema, document, variables)
    cost = pricing.of(operations[0])
    read = frozenset(pricing.read)
    if cost <= max_cost:
        return None, read
    shown = f"{cost:,}" if cost < 10**12 else "over a trillion"
    return GraphQLError(
        f"query cost {shown} exceeds the limit of {max_cost:,}: ask for fewer items (first),"
        " fewer aliases or less nesting",
        operations[0],
        extensions={"code": "QUERY_TOO_COSTLY"},
    ), read


_ABSENT = object()  # a variable the request leaves out (its default applies), not null
MAX_VERDICTS = 64  # per document: bounds what clients varying ``first`` can make us keep


class CostVerdicts:
    """The cost refusals (or None) of one document's operations, remembered by operation
    name and by the values of the variables the price read (those given to ``first``)."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode, max_cost: int) -> None:
        self._schema = schema
        self._document = document
        self._max_cost = max_cost
        self._depends_on: dict[str | None, tuple[str, ...]] = {}
        self._verdicts: dict[tuple[object, ...], GraphQLError | None] = {}

    def error(
        self, operation_name: str | None, variables: Mapping[str, Any] | None
    ) -> GraphQLError | None:
        names = self._depends_on.get(operation_name)
        key = None if names is None else _key(operation_name, names, variables or {})
        if key is not None and key in self._verdicts:
            return self._verdicts[key]
        refused, read = _priced(
            self._schema, self._document, operation_name, variables, self._max_cost
        )
        names = self._depends_on[operation_name] = tuple(sorted(read))
        key = _key(operation_name, names, variables or {})
        if key is not None and len(self._verdicts) < MAX_VERDICTS:
            self._verdicts[key] = refused
        return refused


def _key(
    operation_name: str | None, names: tuple[str, ...], variables: Mapping[str, Any]
) -> tuple[object, ...] | None:
    """None when a value cannot be a key (a list, an object: coercion refuses it anyway)."""
    values: list[object] = [operation_name]
    for name in names:
        value = variables.get(name, _ABSENT)
        if not (value is _ABSENT or value is None or isinstance(value, int | float | str)):
            return None
        values.append((type(value), value))  # True and 1 are equal keys, not equal prices
    return tuple(values)
