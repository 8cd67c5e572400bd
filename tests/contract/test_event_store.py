"""Contract of the event store, proven on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.errors import CommandIdReused, VersionConflict
from domain.eventstore.engines import create_engine
from domain.eventstore.group_commit import insert_events
from domain.eventstore.store import CommandRecord, EventStore, StreamState
from tests.support.factories import HoldNextInsert, new_event


async def test_appended_events_read_back_exactly(store: EventStore) -> None:
    result = await store.append("s-1", [new_event(1), new_event(2)], StreamState.NO_STREAM)

    recorded = await store.read_stream("s-1")
    assert [e.stream_version for e in recorded] == [1, 2]
    assert [e.data for e in recorded] == [{"n": 1, "amount": "1.10"}, {"n": 2, "amount": "1.10"}]
    assert recorded[0].metadata == {"command_id": "c1"}
    assert recorded[0].recorded_at.tzinfo is UTC
    assert (result.version, result.position) == (2, recorded[-1].position)
    assert await store.head_position() == result.position


async def test_reading_a_stream_from_a_version(store: EventStore) -> None:
    await store.append("s-1", [new_event(n) for n in range(5)], StreamState.ANY)

    assert [e.stream_version for e in await store.read_stream("s-1", from_version=4)] == [4, 5]
    assert await store.read_stream("missing") == []


async def test_expected_version_any_appends_whatever_the_stream_is(store: EventStore) -> None:
    await store.append("s-1", [new_event()], StreamState.ANY)
    result = await store.append("s-1", [new_event()], StreamState.ANY)
    assert result.version == 2


async def test_expected_no_stream_refuses_an_existing_stream(store: EventStore) -> None:
    await store.append("s-1", [new_event()], StreamState.NO_STREAM)

    with pytest.raises(VersionConflict) as conflict:
        await store.append("s-1", [new_event()], StreamState.NO_STREAM)
    assert (conflict.value.expected, conflict.value.actual) == (None, 1)
    assert len(await store.read_stream("s-1")) == 1


async def test_a_new_stream_that_exists_fails_alone_in_its_batch(store: EventStore) -> None:
    """New streams' versions are not read before the insert: the stream that exists after
    all is refused by the database, as that append's own conflict; its batch commits."""
    await store.append("taken", [new_event(), new_event()], StreamState.NO_STREAM)

    outcomes = await asyncio.gather(
        *(store.append(f"new-{n}", [new_event(n)], StreamState.NO_STREAM) for n in range(4)),
        store.append("taken", [new_event(9)], StreamState.NO_STREAM),
        *(store.append(f"new-{n}", [new_event(n)], 0) for n in range(4, 8)),
        return_exceptions=True,
    )

    conflict = outcomes[4]
    assert isinstance(conflict, VersionConflict)
    assert (conflict.expected, conflict.actual) == (None, 2)
    assert all(not isinstance(o, BaseException) for o in outcomes[:4] + outcomes[5:])
    assert [e.data["n"] for e in await store.read_stream("taken")] == [0, 0]
    assert len(await store.read_all(after=0)) == 2 + 8


async def test_a_batch_of_new_orders_costs_three_statements(
    engine: AsyncEngine, store: EventStore
) -> None:
    """What one group commit of placements sends: the command ids' look-up, the events, the
    command records (and on PostgreSQL the append lock); no read of stream versions."""
    await store.append("warm", [new_event()], StreamState.NO_STREAM)  # pool and caches ready
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(" ".join(statement.split()).upper())

    sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await asyncio.gather(
            *(
                store.append(
                    f"order-{n}",
                    [new_event(n)],
                    StreamState.NO_STREAM,
                    CommandRecord(f"c-{n}", "f"),
                )
                for n in range(8)
            )
        )
    finally:
        sa.event.remove(engine.sync_engine, "before_cursor_execute", record)

    statements = [s for s in sent if not s.startswith(("BEGIN", "COMMIT", "LOCK TABLE"))]
    assert [s.split(" ")[0] for s in statements] == ["SELECT", "INSERT", "INSERT"], sent
    assert "FROM COMMANDS" in statements[0]
    assert len(await store.read_all(after=0)) == 9


async def test_expected_exact_version_must_match(store: EventStore) -> None:
    await store.append("s-1", [new_event(), new_event()], StreamState.NO_STREAM)

    with pytest.raises(VersionConflict) as conflict:
        await store.append("s-1", [new_event()], 1)
    assert (conflict.value.expected, conflict.value.actual) == (1, 2)
    assert "expected 1" in str(conflict.value)

    result = await store.append("s-1", [new_event()], 2)
    assert result.version == 3


async def crash_after_insert(conn: AsyncConnection, rows: list[dict[str, Any]]) -> list[int]:
    """The real insert, then a failure before the commit."""
    await insert_events(conn, rows)
    raise ConnectionResetError("connection lost before commit")


async def test_a_multi_event_append_is_all_or_nothing(store: EventStore) -> None:
    crashing = EventStore(store._engine, insert=crash_after_insert)

    with pytest.raises(ConnectionResetError):
        await crashing.append("s-1", [new_event(1), new_event(2), new_event(3)], StreamState.ANY)

    assert await store.read_stream("s-1") == []
    assert await store.head_position() == 0
    result = await store.append("s-1", [new_event(1), new_event(2)], StreamState.NO_STREAM)
    assert result.version == 2


async def test_concurrent_appends_to_one_stream_never_write_a_version_twice(
    store: EventStore,
) -> None:
    outcomes = await asyncio.gather(
        *(store.append("s-1", [new_event(n)], 0) for n in range(20)), return_exceptions=True
    )

    winners = [o for o in outcomes if not isinstance(o, BaseException)]
    losers = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(winners) == 1
    assert len(losers) == 19
    assert all(isinstance(loser, VersionConflict) for loser in losers)
    assert [e.stream_version for e in await store.read_stream("s-1")] == [1]


async def test_positions_in_one_batch_follow_each_streams_versions(store: EventStore) -> None:
    """Positions come back matched by (stream, version), not by order: they must still be
    taken in the order the rows were given, or a projector reading by position would apply
    an order's second event before its first."""
    results = await asyncio.gather(
        *(
            store.append(f"s-{n}", [new_event(10 * n + k) for k in range(3)], StreamState.ANY)
            for n in range(6)
        )
    )

    everything = await store.read_all(after=0)
    assert [(e.stream_id, e.stream_version) for e in everything] == [
        (f"s-{n}", k) for n in range(6) for k in (1, 2, 3)
    ]
    assert [r.position for r in results] == [e.position for e in everything][2::3]


async def test_concurrent_appends_to_many_streams_form_one_total_order(
    store: EventStore,
) -> None:
    results = await asyncio.gather(
        *(store.append(f"s-{n}", [new_event(n)], StreamState.NO_STREAM) for n in range(20))
    )

    everything = await store.read_all(after=0)
    positions = [e.position for e in everything]
    assert len(everything) == 20
    assert positions == sorted(set(positions))
    assert sorted(r.position for r in results) == positions


async def test_read_all_pages_after_a_position(store: EventStore) -> None:
    for n in range(7):
        await store.append(f"s-{n % 3}", [new_event(n)], StreamState.ANY)

    first = await store.read_all(after=0, limit=3)
    rest = await store.read_all(after=first[-1].position, limit=100)
    assert [e.data["n"] for e in first + rest] == list(range(7))


async def test_a_tailing_reader_never_skips_an_event_that_commits_late(
    store: EventStore,
) -> None:
    hold = HoldNextInsert()
    held_store = EventStore(store._engine, insert=hold)
    seen: list[int] = []

    async def tail() -> None:
        after = seen[-1] if seen else 0
        for event in await store.read_all(after=after):
            seen.append(event.position)

    held = asyncio.create_task(held_store.append("held", [new_event(0)], StreamState.ANY))
    await hold.inside.wait()
    later = [
        asyncio.create_task(store.append(f"later-{n}", [new_event(n)], StreamState.ANY))
        for n in range(1, 6)
    ]
    # Give the later writers every chance to commit ahead of the held one; a store that lets
    # them would hand the reader positions above the held event's, and it would skip it.
    await asyncio.wait(later, timeout=0.5)
    await tail()
    hold.release.set()
    await asyncio.gather(held, *later)
    await tail()

    stored = [e.position for e in await store.read_all(after=0)]
    assert len(stored) == 6
    assert seen == stored


async def test_a_repeated_command_id_appends_nothing_and_returns_the_first_result(
    store: EventStore,
) -> None:
    command = CommandRecord("cmd-1", "fingerprint-a")
    first = await store.append("s-1", [new_event(1)], StreamState.ANY, command)

    again = await store.append("s-1", [new_event(2)], StreamState.ANY, command)

    assert (again.version, again.position, again.duplicate) == (
        first.version,
        first.position,
        True,
    )
    assert len(await store.read_stream("s-1")) == 1
    assert await store.find_command(command) == again


async def test_a_reused_command_id_with_another_payload_is_refused(store: EventStore) -> None:
    await store.append("s-1", [new_event(1)], StreamState.ANY, CommandRecord("cmd-1", "a"))

    with pytest.raises(CommandIdReused):
        await store.append("s-1", [new_event(2)], StreamState.ANY, CommandRecord("cmd-1", "b"))
    with pytest.raises(CommandIdReused):
        await store.find_command(CommandRecord("cmd-1", "b"))
    assert len(await store.read_stream("s-1")) == 1


async def test_concurrent_duplicates_of_one_command_append_once(store: EventStore) -> None:
    command = CommandRecord("cmd-1", "fingerprint-a")
    results = await asyncio.gather(
        *(store.append(f"s-{n}", [new_event(n)], StreamState.ANY, command) for n in range(10))
    )

    assert sum(not r.duplicate for r in results) == 1
    assert len({(r.stream_id, r.position) for r in results}) == 1
    assert len(await store.read_all()) == 1


async def test_an_unreachable_database_fails_each_append_instead_of_hanging() -> None:
    engine = create_engine("postgresql://postgres@127.0.0.1:1/nowhere")  # nothing listens
    store = EventStore(engine)
    try:
        async with asyncio.timeout(10):
            outcomes = await asyncio.gather(
                *(store.append(f"s-{n}", [new_event(1)], StreamState.ANY) for n in range(3)),
                return_exceptions=True,
            )
    finally:
        await engine.dispose()
    assert all(isinstance(o, OSError) for o in outcomes), outcomes


async def test_a_failing_listener_does_not_append_the_batch_again(store: EventStore) -> None:
    def failing(_head: int) -> None:
        raise RuntimeError("listener bug")

    store.on_append(failing)
    result = await store.append("s-1", [new_event(1)], StreamState.ANY)
    assert result.version == 1
    assert [e.stream_version for e in await store.read_stream("s-1")] == [1]
    assert await store.head_position() == result.position
