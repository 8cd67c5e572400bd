"""The one-hop SQLite cursor (domain/eventstore/sqlite_cursor.py) behaves as the stock adapter
does."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError

from domain.eventstore.engines import create_engine, reader, write_transaction
from domain.eventstore.sqlite_cursor import OneHopDBAPI


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


async def test_reads_leave_the_connection_in_our_transaction_control(tmp_path: Path) -> None:
    """A read opens no transaction and leaves the connection as we set it up: sqlite3 in
    autocommit (isolation_level None), so every transaction is the BEGIN we emit. Asking
    SQLAlchemy for AUTOCOMMIT instead switched the level on every check-out and back to
    implicit transactions on every check-in, three extra trips to the worker thread."""
    engine = create_engine(f"sqlite:///{tmp_path / 'r.db'}", pool_size=1, max_overflow=0)
    try:
        async with write_transaction(engine) as conn:
            await conn.execute(sa.text("CREATE TABLE t (k INTEGER PRIMARY KEY)"))
            await conn.execute(sa.text("INSERT INTO t (k) VALUES (1)"))
        for _ in range(3):
            async with reader(engine).connect() as conn:
                assert (await conn.execute(sa.text("SELECT k FROM t"))).scalar_one() == 1
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            assert raw._connection.isolation_level is None
            assert not raw._connection.in_transaction

        async def insert_2_then_1_again() -> None:
            async with write_transaction(engine) as conn:
                await conn.execute(sa.text("INSERT INTO t (k) VALUES (2)"))
                await conn.execute(sa.text("INSERT INTO t (k) VALUES (1)"))

        # A write after the reads is still one transaction: rolled back as a whole.
        with pytest.raises(IntegrityError):
            await insert_2_then_1_again()
        async with reader(engine).connect() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM t"))).scalar_one() == 1
    finally:
        await engine.dispose()
