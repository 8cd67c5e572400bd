"""The JavaScript clients a frontend uses, against a live server: Apollo Client 4 with its
persisted-query link, urql, and graphql-ws, running the recipes of docs/clients.md
(web/clients/read-your-writes.mjs) in Node."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from graph.runtime.app import create_app
from graph.runtime.settings import Settings
from tests.support.serving import serve_app

WEB = Path(__file__).resolve().parents[2] / "web"
SCRIPT = WEB / "clients" / "read-your-writes.mjs"


def require_node_clients() -> str:
    node = shutil.which("node")
    if node is None or not (WEB / "node_modules" / "@apollo" / "client").is_dir():
        message = "the JavaScript client tests need Node.js and `make web` (web/node_modules)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return node


async def run_clients(url: str) -> dict[str, Any]:
    node = require_node_clients()
    process = await asyncio.create_subprocess_exec(
        node, str(SCRIPT), url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()
    result: dict[str, Any] = json.loads(stdout)
    return result


async def test_apollo_and_urql_read_their_own_writes_and_see_stale_answers(
    engine: AsyncEngine, database_url: str
) -> None:
    settings = Settings(
        database_url=database_url, read_wait_seconds=0.5, poll_interval=0.2, auth="none"
    )
    async with serve_app(create_app(settings)) as url:
        result = await run_clients(url + "/graphql")

    assert result["placed"] == "CommandAccepted"
    apollo, urql = result["apollo"], result["urql"]
    assert apollo["first"]["status"] == "PLACED"  # visible once caughtUp arrived
    assert apollo["second"] == apollo["first"]
    # Only the read for a position nobody wrote is stale, and Apollo's link saw it.
    [stale] = apollo["staleReads"]
    assert stale["operation"] == "Order"
    assert [entry["field"] for entry in stale["stale"]] == ["order"]
    assert urql["fresh"]["status"] == "PLACED"
    assert urql["freshStale"] is None
    assert [entry["field"] for entry in urql["staleExtensions"]] == ["order"]

    # Apollo's persisted-query link: the hash alone first; the full query once, when the
    # server does not know the hash; then the hash alone over GET.
    hash_only = {"hasQuery": False, "hasHash": True}
    with_query = {"method": "POST", "hasQuery": True, "hasHash": True}
    assert result["requests"] == [
        {"method": "POST", **hash_only},  # the mutation, unknown
        with_query,
        {"method": "GET", **hash_only},  # the query, unknown
        with_query,
        {"method": "GET", **hash_only},  # known from now on
        {"method": "GET", **hash_only},
    ]
