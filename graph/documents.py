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

from graphql import ASTValidationRule, DocumentNode, GraphQLError, parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

MAX_DOCUMENTS = 128  # distinct query texts kept (strawberry's caches kept as many); bounds memory


@dataclass(eq=False)
class _Document:
    node: DocumentNode
    errors: list[GraphQLError] | None = field(default=None)  # None until validated once


def cached_documents(
    *, max_tokens: int, rules: Sequence[type[ASTValidationRule]], maxsize: int = MAX_DOCUMENTS
) -> Callable[[], SchemaExtension]:
    """A factory for ``strawberry.Schema(extensions=[...])``; the cache is the factory's own,
    so two schemas never share validation results."""
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
                    cached.errors = validate_document(
                        context.schema._schema,
                        context.graphql_document,
                        (*context.validation_rules, *limits),
                    )
                context.pre_execution_errors = list(cached.errors)
            yield

    return CachedDocuments
