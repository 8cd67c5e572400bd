"""What one trivial statement costs through each driver path: where SQLite's time goes.

    python -m bench.statement_cost [--postgres postgresql://postgres@127.0.0.1/test]

Runs 2,000 ``SELECT 1`` on one connection through SQLAlchemy + aiosqlite, raw aiosqlite,
and SQLAlchemy + asyncpg, and prints microseconds per statement.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiosqlite
import sqlalchemy as sa

from graph.runtime.composition import engine_for_url

N = 2000


async def _through_sqlalchemy(url: str) -> float:
    engine = engine_for_url(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
            started = time.perf_counter()
            for _ in range(N):
                await conn.execute(sa.text("SELECT 1"))
            return (time.perf_counter() - started) / N * 1e6
    finally:
        await engine.dispose()


async def _raw_aiosqlite(path: Path) -> float:
    async with aiosqlite.connect(path) as db:
        started = time.perf_counter()
        for _ in range(N):
            await db.execute_fetchall("SELECT 1")
        return (time.perf_counter() - started) / N * 1e6


async def run(postgres: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cost.db"
        print(f"SQLAlchemy + aiosqlite  {await _through_sqlalchemy(f'sqlite:///{path}'):7.0f} us")
        print(f"raw aiosqlite           {await _raw_aiosqlite(path):7.0f} us")
    print(f"SQLAlchemy + asyncpg    {await _through_sqlalchemy(postgres):7.0f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    asyncio.run(run(parser.parse_args().postgres))


if __name__ == "__main__":
    main()
