"""The baseline server: what the same requests cost with nothing but Starlette and the raw
driver, under the same uvicorn settings as ``ordergraph serve``.

    DATABASE_URL=... python -m bench.baseline_server --port P

- ``POST /place`` takes placeOrder's GraphQL body and durably inserts one event row (asyncpg
  with a small pool; on SQLite one aiosqlite connection in WAL mode with ``synchronous=FULL``,
  ordergraph's default), answering in placeOrder's response shape.
- ``POST /order`` takes the ``order(id)`` query's body and reads that row of ordergraph's
  ``order_views`` table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiosqlite
import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

POOL_SIZE = 8

_PG_TABLE = """CREATE TABLE IF NOT EXISTS baseline_events (
    position BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, stream_version INT NOT NULL,
    event_type TEXT NOT NULL, data JSONB NOT NULL, metadata JSONB NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL, UNIQUE (stream_id, stream_version))"""
_SQLITE_TABLE = """CREATE TABLE IF NOT EXISTS baseline_events (
    position INTEGER PRIMARY KEY, stream_id TEXT NOT NULL, stream_version INT NOT NULL,
    event_type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL,
    recorded_at TEXT NOT NULL, UNIQUE (stream_id, stream_version))"""
_INSERT = (
    "INSERT INTO baseline_events (stream_id, stream_version, event_type, data, metadata, "
    "recorded_at) VALUES ({})"
)
_ORDER_COLUMNS = "order_id, customer_id, status, lines, total, shipping_address, placed_at, version"

# (event row values) -> position; (order id) -> row or None
Insert = Callable[[tuple[Any, ...]], Awaitable[int]]
Select = Callable[[str], Awaitable[tuple[Any, ...] | None]]


@contextlib.asynccontextmanager
async def _postgres(url: str) -> AsyncIterator[tuple[Insert, Select]]:
    async with asyncpg.create_pool(url, min_size=POOL_SIZE, max_size=POOL_SIZE) as pool:
        await pool.execute(_PG_TABLE)
        insert_sql = _INSERT.format("$1, $2, $3, $4, $5, $6") + " RETURNING position"
        select_sql = f"SELECT {_ORDER_COLUMNS} FROM order_views WHERE order_id = $1"

        async def insert(values: tuple[Any, ...]) -> int:
            return int(await pool.fetchval(insert_sql, *values))

        async def select(order_id: str) -> tuple[Any, ...] | None:
            row = await pool.fetchrow(select_sql, order_id)
            return None if row is None else tuple(row)

        yield insert, select


@contextlib.asynccontextmanager
async def _sqlite(path: str) -> AsyncIterator[tuple[Insert, Select]]:
    # Autocommit (isolation_level=None): each INSERT is its own durable transaction.
    async with (
        aiosqlite.connect(path, isolation_level=None) as writer,
        aiosqlite.connect(path, isolation_level=None) as reader,
    ):
        for conn in (writer, reader):
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000"):
                await conn.execute(f"PRAGMA {pragma}")
        await writer.execute(_SQLITE_TABLE)
        insert_sql = _INSERT.format("?, ?, ?, ?, ?, ?")
        select_sql = f"SELECT {_ORDER_COLUMNS} FROM order_views WHERE order_id = ?"

        async def insert(values: tuple[Any, ...]) -> int:
            row = await writer.execute_insert(insert_sql, values)
            assert row is not None
            return int(row[0])

        async def select(order_id: str) -> tuple[Any, ...] | None:
            async with reader.execute(select_sql, (order_id,)) as cursor:
                row = await cursor.fetchone()
            return None if row is None else tuple(row)

        yield insert, select


def create_app(database_url: str) -> Starlette:
    is_sqlite = database_url.startswith("sqlite")
    store: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if is_sqlite:
            opened = _sqlite(database_url.removeprefix("sqlite:///"))
        else:
            opened = _postgres(database_url)
        async with opened as (store["insert"], store["select"]):
            yield

    async def place(request: Request) -> JSONResponse:
        input_ = json.loads(await request.body())["variables"]["input"]
        order_id = str(input_.get("orderId") or uuid.uuid4())
        data = {
            "order_id": order_id,
            "customer_id": input_["customerId"],
            "lines": input_["items"],
            "shipping_address": input_["shippingAddress"],
        }
        meta = {"command_id": str(uuid.uuid4())}
        now = datetime.now(UTC)
        recorded: Any = now.isoformat() if is_sqlite else now  # asyncpg wants a datetime
        values = (
            "order-" + order_id,
            1,
            "OrderPlaced",
            json.dumps(data),
            json.dumps(meta),
            recorded,
        )
        position = await store["insert"](values)
        result = {"__typename": "CommandAccepted", "orderId": order_id, "version": 1}
        return JSONResponse({"data": {"placeOrder": {**result, "position": position}}})

    async def order(request: Request) -> JSONResponse:
        order_id = json.loads(await request.body())["variables"]["id"]
        row = await store["select"](str(order_id))
        if row is None:
            return JSONResponse({"data": {"order": None}})
        oid, customer, status, lines, total, address, placed_at, version = row
        view = {
            "id": oid,
            "customerId": customer,
            "status": status,
            "lines": json.loads(lines) if isinstance(lines, str) else lines,
            "total": str(total),
            "shippingAddress": json.loads(address) if isinstance(address, str) else address,
            "placedAt": str(placed_at),
            "version": version,
        }
        return JSONResponse({"data": {"order": view}})

    return Starlette(
        routes=[Route("/place", place, methods=["POST"]), Route("/order", order, methods=["POST"])],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(os.environ["DATABASE_URL"]),
        host="127.0.0.1",
        port=args.port,
        log_level=os.environ.get("LOG_LEVEL", "warning"),
        access_log=False,  # as ordergraph serve
        loop="auto",
        http="auto",
    )


if __name__ == "__main__":
    main()
