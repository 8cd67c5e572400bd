"""``ordergraph serve --workers 2`` on PostgreSQL: both workers serve, each hears every
projection notification, /metrics adds up every worker; SQLite refuses several workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from graph.runtime.startup import USAGE
from tests.support.graphql import PLACE, place_input
from tests.support.ops import parse_metrics, value
from tests.support.serving import free_port, graphql_ws, stop_process

STARTUP = 60.0


@contextlib.asynccontextmanager
async def process(args: list[str], env: dict[str, str], log: Path) -> AsyncIterator[None]:
    with log.open("wb") as output:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "graph.runtime.cli", *args, env=env, stdout=output, stderr=output
        )
    try:
        yield
    finally:
        await stop_process(child)


async def _until_ready(url: str) -> None:
    async with httpx.AsyncClient(timeout=2) as http, asyncio.timeout(STARTUP):
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(url + "/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)


async def _place_on_a_new_connection(url: str) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        response = await http.post(
            "/graphql", json={"query": PLACE, "variables": {"input": place_input()}}
        )
        result = response.json()["data"]["placeOrder"]
        assert result["__typename"] == "CommandAccepted"
        return int(result["position"])


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_workers_serve_and_share_notifications(
    engine: AsyncEngine, database_url: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "AUTH": "none",
        "LOG_FORMAT": "json",
        "POLL_INTERVAL": "60",  # wake-ups must come by notification, not by poll
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    api_env = {**env, "RUN_PROJECTOR": "false"}
    serve = ["serve", "--workers", "2", "--port", str(port)]
    async with (
        process(["project"], env, tmp_path / "projector.log"),
        process(serve, api_env, tmp_path / "api.log"),
    ):
        await _until_ready(url)
        async with graphql_ws(url + "/graphql") as first, graphql_ws(url + "/graphql") as second:
            positions = await asyncio.gather(*(_place_on_a_new_connection(url) for _ in range(40)))
            head = max(positions)
            query = "subscription($p: Position!) { caughtUp(position: $p) { position } }"
            for ws in (first, second):
                caught_up = await ws.subscribe(query, {"p": head})
                async with asyncio.timeout(20):
                    assert [e async for e in caught_up] == [{"caughtUp": {"position": head}}]
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            samples = parse_metrics((await http.get("/metrics")).text)

    lines = [
        json.loads(line)
        for line in (tmp_path / "api.log").read_text().splitlines()
        if line.startswith("{")
    ]
    requests = [line for line in lines if line["logger"] == "ordergraph.request"]
    assert not [line for line in lines if line["logger"] == "uvicorn.access"]  # ours only
    placed_by = {line["pid"] for line in requests if line["operation"] == "placeOrder"}
    assert len(placed_by) == 2, "both workers served placeOrder"
    # one scrape adds up the workers
    placed = value(
        samples, "ordergraph_requests_total", operation="placeOrder", outcome="CommandAccepted"
    )
    assert placed == 40
    assert value(samples, "ordergraph_event_store_head") == head


async def test_sqlite_refuses_several_workers(tmp_path: Path) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.runtime.cli",
        "serve",
        "--workers",
        "2",
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"},
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == USAGE
    assert err.decode().strip() == (
        "ordergraph: --workers 2 needs PostgreSQL: SQLite takes one writer at a time and its "
        "notifications do not cross processes; run one worker, or set "
        "DATABASE_URL=postgresql://..."
    )
    assert not (tmp_path / "x.db").exists()


async def test_each_worker_gets_the_same_logging_and_gc_tuning(tmp_path: Path) -> None:
    # What uvicorn calls in every worker process: graph.runtime.server:worker_app.
    probe = (
        "import gc, logging; from graph.runtime.server import worker_app; worker_app(); "
        "root = logging.getLogger(); "
        "print(gc.get_threshold(), gc.get_freeze_count() > 0, "
        "type(root.handlers[0].formatter).__name__, "
        "logging.getLogger('uvicorn.access').propagate)"
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        probe,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}", "LOG_FORMAT": "json"},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(child.communicate(), 60)
    assert out.decode().strip() == "(5000, 20, 100) True JsonFormatter False"
