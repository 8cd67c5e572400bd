"""Automatic persisted queries, as Apollo's persisted-query link speaks them.

The client first sends only ``extensions.persistedQuery.sha256Hash`` (over GET for queries, so
a CDN or browser cache can keep the answer). If the hash is unknown the answer is the error
``PersistedQueryNotFound``, and the client sends the hash again with the full query, which is
kept once its hash checks out. Queries are kept in least-recently-used order within a byte
budget, so a client cannot grow the cache without bound by sending distinct documents.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from strawberry.http import GraphQLRequestData

NOT_FOUND = "PersistedQueryNotFound"
NOT_FOUND_CODE = "PERSISTED_QUERY_NOT_FOUND"
NOT_SUPPORTED = "PersistedQueryNotSupported"
NOT_SUPPORTED_CODE = "PERSISTED_QUERY_NOT_SUPPORTED"


class PersistedQueryError(Exception):
    """A request that names a persisted query this server cannot run as asked."""

    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class PersistedQueries:
    """Query texts by their SHA-256, most recently used last, within ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._queries: OrderedDict[str, str] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._queries)

    def resolve(self, data: GraphQLRequestData) -> GraphQLRequestData:
        """The request with its query filled in from the cache, or kept in it; unchanged when
        it names no persisted query."""
        sha256 = _requested_hash(data.extensions)
        if sha256 is None:
            return data
        if self.max_bytes <= 0:
            raise PersistedQueryError(NOT_SUPPORTED, NOT_SUPPORTED_CODE, 400)
        if data.query is None:
            query = self._queries.get(sha256)
            if query is None:
                # 200, as Apollo Server answers it: the link reads the error and retries.
                raise PersistedQueryError(NOT_FOUND, NOT_FOUND_CODE, 200)
            self._queries.move_to_end(sha256)
            return _with_query(data, query)
        if hashlib.sha256(data.query.encode()).hexdigest() != sha256:
            raise PersistedQueryError(
                "The persisted query's sha256Hash does not match its query.",
                "PERSISTED_QUERY_HASH_MISMATCH",
                400,
            )
        self._keep(sha256, data.query)
        return data

    def _keep(self, sha256: str, query: str) -> None:
        size = len(query.encode())
        if sha256 in self._queries or size > self.max_bytes:
            return
        self._queries[sha256] = query
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._queries.popitem(last=False)
            self._bytes -= len(evicted.encode())


def _requested_hash(extensions: dict[str, Any] | None) -> str | None:
    if not extensions or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise PersistedQueryError(
            "Only version 1 of persistedQuery is supported.", "PERSISTED_QUERY_VERSION", 400
        )
    sha256 = persisted.get("sha256Hash")
    if not isinstance(sha256, str) or len(sha256) != 64:
        raise PersistedQueryError(
            "persistedQuery.sha256Hash must be a SHA-256 in hex.", "BAD_PERSISTED_QUERY", 400
        )
    return sha256.lower()


def _with_query(data: GraphQLRequestData, query: str) -> GraphQLRequestData:
    return GraphQLRequestData(
        query=query,
        variables=data.variables,
        operation_name=data.operation_name,
        extensions=data.extensions,
        protocol=data.protocol,
    )
