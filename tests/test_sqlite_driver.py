"""The one-hop SQLite cursor (domain/sqlite_driver.py) behaves as the stock adapter does."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from domain.db import create_engine, write_transaction
from domain.sqlite_driver import OneHopDBAPI


async def test_statements_results_errors_and_rollback(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'd.db'}")
    assert isinstance(engine.dialect.dbapi, OneHopDBAPI)
    try:
        async with write_transaction(engine) as conn:
            await conn.execute(sa.text("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
            inserted = await conn.execute(
                sa.text("INSERT INTO t (v) VALUES (:v)"), [{"v": "a"}, {"v": "b"}]
            )
            assert inserted.rowcount == 2
            returned = await conn.execute(sa.text("INSERT INTO t (v) VALUES ('c') RETURNING k"))
            assert returned.scalar_one() == 3

        async def insert_d_then_a_again() -> None:
            async with write_transaction(engine) as conn:
                await conn.execute(sa.text("INSERT INTO t (v) VALUES ('d')"))
                await conn.execute(sa.text("INSERT INTO t (v) VALUES ('a')"))

        async def malformed() -> None:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELEC nonsense"))

        with pytest.raises(IntegrityError):
            await insert_d_then_a_again()
        with pytest.raises(DBAPIError):
            await malformed()

        async with engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT k, v FROM t ORDER BY k"))).all()
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "b"), (3, "c")]  # 'd' rolled back
    finally:
        await engine.dispose()
