"""Group commit when the database refuses an append: it fails alone, typed; its neighbours in
the batch commit together, once; one log line says which append and why."""

from __future__ import annotations

import asyncio
import logging

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.errors import AppendRefused
from domain.eventstore.outages import is_outage
from domain.eventstore.store import AppendResult, EventStore, NewEvent, StreamState
from tests.support.factories import new_event

# Text neither database stores: PostgreSQL refuses it in JSONB and in text, and SQLite's
# driver cannot encode it. (The edge refuses it long before; here it stands for any value a
# database refuses.)
REFUSED = "bad-\ud800"


def count_commits(engine: AsyncEngine) -> list[int]:
    commits: list[int] = []
    sa.event.listen(engine.sync_engine, "commit", lambda _conn: commits.append(1))
    return commits


async def test_an_append_the_database_refuses_fails_alone_and_the_rest_commit_once(
    engine: AsyncEngine, store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    commits = count_commits(engine)
    caplog.set_level(logging.INFO, logger="ordergraph.store")

    outcomes = await asyncio.gather(
        *(store.append(f"good-{n}", [new_event(n)], StreamState.NO_STREAM) for n in range(5)),
        store.append(REFUSED, [new_event(99)], StreamState.NO_STREAM),
        store.append("bad-data", [NewEvent("Bad", 1, {"text": REFUSED}, {})], StreamState.ANY),
        *(store.append(f"good-{n}", [new_event(n)], StreamState.NO_STREAM) for n in range(5, 9)),
        return_exceptions=True,
    )

    refused = [o for o in outcomes if not isinstance(o, AppendResult)]
    accepted = [o for o in outcomes if isinstance(o, AppendResult)]
    assert len(refused) >= 1
    assert all(isinstance(o, AppendRefused) for o in refused)
    assert len(accepted) + len(refused) == 11
    assert {o.stream_id for o in accepted} >= {f"good-{n}" for n in range(9)}
    # The failed batch rolled back; its good appends then committed together, once.
    assert len(commits) == 1
    assert sorted(o.position for o in accepted) == list(range(1, len(accepted) + 1))
    lines = [r for r in caplog.records if r.name == "ordergraph.store"]
    assert len(lines) == len(refused)
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in lines)
    assert await store.head_position() == len(accepted)
    assert [e.stream_id for e in await store.read_all()] == [o.stream_id for o in accepted]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_outage_inside_a_batch_is_not_blamed_on_the_data(
    engine: AsyncEngine, store: EventStore
) -> None:
    """A full disk (here a trigger raising disk_full) refuses every insert. That is the
    database's fault, not the appends': they fail retryable (503 at the edge), never as
    ``AppendRefused`` (InvalidInput)."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "CREATE OR REPLACE FUNCTION fake_disk_full() RETURNS trigger AS $$ BEGIN"
                " RAISE EXCEPTION 'could not extend file: No space left on device'"
                " USING ERRCODE = 'disk_full'; END $$ LANGUAGE plpgsql"
            )
        )
        await conn.execute(
            sa.text(
                "CREATE TRIGGER fake_disk_full BEFORE INSERT ON events FOR EACH ROW"
                " EXECUTE FUNCTION fake_disk_full()"
            )
        )
    try:
        outcomes = await asyncio.gather(
            *(store.append(f"s-{n}", [new_event(n)], StreamState.NO_STREAM) for n in range(4)),
            return_exceptions=True,
        )
    finally:
        async with engine.begin() as conn:
            await conn.execute(sa.text("DROP TRIGGER fake_disk_full ON events"))
            await conn.execute(sa.text("DROP FUNCTION fake_disk_full()"))
    assert all(isinstance(o, Exception) for o in outcomes), outcomes
    assert all(is_outage(o) for o in outcomes if isinstance(o, Exception)), outcomes
    assert not any(isinstance(o, AppendRefused) for o in outcomes)
