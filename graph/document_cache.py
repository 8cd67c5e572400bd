"""Parsed and validated documents, cached by their query text, with our limits applied.

Clients send the same few documents again and again, so each is parsed (with the token limit)
and validated (with the depth and alias limits) once. This one extension replaces strawberry's
MaxTokensLimiter, ParserCache, AddValidationRules and ValidationCache: that stack cost a
hook per extension per request, and ValidationCache keys its LRU on the parsed document,
whose hash walks the whole syntax tree on every request (5% of a placeOrder in the GraphQL
layer alone, ``python -m bench.graphql_ceiling``).

A document that fails to parse is not cached: strawberry parses it again, with the same token
limit, and reports the error the usual way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    parse,
    validate,
)
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from graph.cost import CostVerdicts

MAX_DOCUMENTS = 128  # distinct query texts kept (strawberry's caches kept as many); bounds memory


@dataclass(eq=False)
class _Document:
    node: DocumentNode
    errors: list[GraphQLError] | None = field(default=None)  # None until validated once
    # The metrics and log label of each operation in it, by operation name (see operation_label)
    labels: dict[str | None, str] = field(default_factory=dict)
    costs: CostVerdicts | None = None  # made with the first request that is priced


MAX_LABELLED_FIELDS = 3  # more root fields than this are labelled "multiple": bounded labels


def operation_label(document: DocumentNode, operation_name: str | None) -> str:
    """The root field names of the operation that runs ("order,customer"), for metrics and
    logs. Field names come from the schema (the document is valid), never from clients'
    operation names or aliases, so the label's values stay few."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = next(
        (o for o in operations if operation_name in (None, o.name and o.name.value)), None
    )
    if chosen is None:
        return "-"
    names = sorted(
        {s.name.value for s in chosen.selection_set.selections if isinstance(s, FieldNode)}
    )
    if not names:
        return "-"
    return ",".join(names) if len(names) <= MAX_LABELLED_FIELDS else "multiple"


def cached_documents(
    *,
    max_tokens: int,
    rules: Sequence[type[ASTValidationRule]],
    maxsize: int = MAX_DOCUMENTS,
    hide_suggestions: bool = False,
    max_cost: int | None = None,
) -> Callable[[], SchemaExtension]:
    """A factory for ``strawberry.Schema(extensions=[...])``; the cache is the factory's own,
    so two schemas never share validation results. ``hide_suggestions`` leaves graphql-core's
    "Did you mean ...?" out of validation errors (they spell out the schema)."""
    limits = tuple(rules)

    @functools.lru_cache(maxsize=maxsize)
    def document(query: str) -> _Document:
        return _Document(parse(query, max_tokens=max_tokens))

    class CachedDocuments(SchemaExtension):
        _document: _Document | None = None

        def on_parse(self) -> Iterator[None]:
            context = self.execution_context
            context.parse_options["max_tokens"] = max_tokens
            if context.query is not None and context.graphql_document is None:
                try:
                    self._document = document(context.query)
                except GraphQLError:
                    pass  # strawberry parses it again and reports the error
                else:
                    context.graphql_document = self._document.node
            yield

        def on_validate(self) -> Iterator[None]:
            context = self.execution_context
            cached = self._document
            if cached is None:  # not from our cache (a pre-parsed document): validate
                context.validation_rules = (*context.validation_rules, *limits)
            else:
                if cached.errors is None:
                    assert context.graphql_document is not None
                    cached.errors = _validate(
                        context.schema._schema,
                        context.graphql_document,
                        (*context.validation_rules, *limits),
                        hide_suggestions,
                    )
                context.pre_execution_errors = list(cached.errors)
                request = getattr(context.context, "request", None)
                if request is not None and not cached.errors:
                    name = context.operation_name
                    label = cached.labels.get(name)
                    if label is None:
                        label = cached.labels[name] = operation_label(cached.node, name)
                    request.operation = label
            # ``operation_name`` falls back to the first operation's name; what the client
            # sent is kept aside.
            provided = getattr(context, "_provided_operation_name", None)
            if provided is None and context.graphql_document is not None:
                operations = [
                    d
                    for d in context.graphql_document.definitions
                    if isinstance(d, OperationDefinitionNode)
                ]
                if len(operations) > 1 and not context.pre_execution_errors:
                    # The GraphQL spec: ambiguous, refuse (strawberry ran the first one).
                    context.pre_execution_errors = [
                        *(context.pre_execution_errors or []),
                        GraphQLError(
                            "The document holds several operations: say which to run in"
                            " operationName."
                        ),
                    ]
            if (
                max_cost is not None
                and not context.pre_execution_errors
                and context.graphql_document is not None
            ):
                if cached is None:  # a pre-parsed document: priced once, here
                    costs = CostVerdicts(context.schema._schema, context.graphql_document, max_cost)
                elif cached.costs is None:
                    costs = cached.costs = CostVerdicts(
                        context.schema._schema, context.graphql_document, max_cost
                    )
                else:
                    costs = cached.costs
                refused = costs.error(provided, context.variables)
                if refused is not None:
                    context.pre_execution_errors = [refused]
            yield

    return CachedDocuments


def _validate(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: tuple[type[ASTValidationRule], ...],
    hide_suggestions: bool,
) -> list[GraphQLError]:
    if not hide_suggestions:
        return validate_document(schema, document, rules)
    # strawberry's validate_document with graphql-core's hide_suggestions, which it cannot pass
    strawberry_rules = (MaybeNullValidationRule, OneOfInputValidationRule)
    return validate(schema, document, (*rules, *strawberry_rules), hide_suggestions=True)
