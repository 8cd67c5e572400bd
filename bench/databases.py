"""Throwaway databases: a SQLite file in a temp dir, or a PostgreSQL database created for the
run and dropped (WITH FORCE) at the end, whatever happened in between."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

ADMIN_URL = os.environ.get(
    "ORDERGRAPH_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(ADMIN_URL, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def throwaway(backend: str, directory: Path, label: str) -> AsyncIterator[str]:
    """Yield the DATABASE_URL of a new, empty database."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / f'{label}.db'}"
        return
    name = f"ordergraph_bench_{label}_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
