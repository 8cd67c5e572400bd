"""Automatic persisted queries over real HTTP, and the cache's bounds."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from strawberry.http import GraphQLRequestData

from graph.persisted_queries import PersistedQueries, PersistedQueryError
from graph.runtime.app import create_app
from graph.runtime.settings import Settings
from tests.support.serving import serve_app

QUERY = "{ projections { name } }"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}}


@pytest.fixture
async def http(tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'apq.db'}")
    async with serve_app(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_an_unknown_hash_asks_for_the_query_then_the_hash_alone_is_enough(
    http: httpx.AsyncClient,
) -> None:
    params = {"extensions": json.dumps(persisted(QUERY))}
    unknown = await http.get("/graphql", params=params)
    assert unknown.status_code == 200
    assert unknown.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }

    kept = await http.post("/graphql", json={"query": QUERY, "extensions": persisted(QUERY)})
    assert len(kept.json()["data"]["projections"]) == 3

    by_hash = await http.get("/graphql", params=params)
    assert by_hash.status_code == 200
    assert len(by_hash.json()["data"]["projections"]) == 3
    by_hash_post = await http.post("/graphql", json={"extensions": persisted(QUERY)})
    assert by_hash_post.json() == by_hash.json()


async def test_a_query_that_does_not_match_its_hash_is_refused_and_not_kept(
    http: httpx.AsyncClient,
) -> None:
    lie = {"persistedQuery": {"version": 1, "sha256Hash": sha256("{ __typename }")}}
    refused = await http.post("/graphql", json={"query": QUERY, "extensions": lie})
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_HASH_MISMATCH"
    still_unknown = await http.post("/graphql", json={"extensions": lie})
    assert still_unknown.json()["errors"][0]["message"] == "PersistedQueryNotFound"


@pytest.mark.parametrize(
    "extensions",
    [
        {"persistedQuery": {"version": 2, "sha256Hash": sha256(QUERY)}},
        {"persistedQuery": {"version": 1, "sha256Hash": "abc"}},
        {"persistedQuery": "yes"},
    ],
)
async def test_malformed_persisted_query_extensions_are_a_client_error(
    http: httpx.AsyncClient, extensions: dict[str, Any]
) -> None:
    refused = await http.post("/graphql", json={"extensions": extensions})
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["message"]


async def test_with_persisted_queries_off_the_client_is_told_they_are_not_supported(
    tmp_path: Any,
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'apq.db'}", persisted_queries_max_bytes=0
    )
    async with serve_app(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        refused = await http.post("/graphql", json={"extensions": persisted(QUERY)})
        plain = await http.post("/graphql", json={"query": QUERY})
    assert refused.json()["errors"][0]["message"] == "PersistedQueryNotSupported"
    assert len(plain.json()["data"]["projections"]) == 3


def request(query: str | None, sha: str) -> GraphQLRequestData:
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha}}
    return GraphQLRequestData(
        query=query, variables=None, operation_name=None, extensions=extensions
    )


def test_the_cache_keeps_the_most_recently_used_queries_within_its_byte_budget() -> None:
    texts = [f"{{ q{i}: __typename }}" for i in range(10)]
    size = len(texts[0])
    cache = PersistedQueries(max_bytes=3 * size)
    for text in texts[:3]:
        cache.resolve(request(text, sha256(text)))
    cache.resolve(request(None, sha256(texts[0])))  # used: now the most recent
    cache.resolve(request(texts[3], sha256(texts[3])))  # evicts texts[1], the least recent

    assert len(cache) == 3
    assert cache.resolve(request(None, sha256(texts[0]))).query == texts[0]
    with pytest.raises(PersistedQueryError, match="PersistedQueryNotFound"):
        cache.resolve(request(None, sha256(texts[1])))

    huge = "{ __typename }" + " " * (4 * size)
    cache.resolve(request(huge, sha256(huge)))  # larger than the whole budget: run, not kept
    with pytest.raises(PersistedQueryError):
        cache.resolve(request(None, sha256(huge)))
