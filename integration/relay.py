"""The relay: the event table is the outbox, and this publishes it to JetStream exactly once.

It is a checkpointed consumer of the event log like the projector, with its own checkpoint
row (``integration``) beside the projections' and the same gap-safe ``read_after`` (appends
commit in position order, see domain/eventstore/group_commit.py). A batch goes:

1. read the events after the checkpoint;
2. publish them, each with its deterministic ``Nats-Msg-Id``, and wait for every PubAck;
3. only then move the checkpoint past them.

A crash anywhere re-sends at most the batch in flight, with the same ids, and the broker's
duplicate window drops the copies (PubAck says ``duplicate``). A publish that fails leaves the
checkpoint where it was: the relay retries the same batch with back-off, records the error
in its checkpoint row (state ``failed``), and never moves past an event it could not publish.

Per-order order: a batch is sent in waves, the first event of each order in the batch, then
the second, ...; a wave goes out only once every PubAck of the previous one is in. A failure
therefore never leaves a later event of an order in the stream before an earlier one, even
when two relays (or a retry and a stale copy) send the same events.

One relay at a time: on PostgreSQL the batch runs in a transaction that holds the checkpoint
row (``FOR UPDATE SKIP LOCKED``, as the projector does), so a second relay process finds it
taken and waits its turn; if the holder dies its transaction ends and the other takes over.
On SQLite the write lock cannot be held across a network round trip (it would stop every
command while the broker is slow), so the checkpoint moves by compare-and-set after the
acknowledgements; SQLite is one machine and one relay, and a second one would only send
copies that the broker drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.eventstore.engines import is_sqlite, reader, write_transaction
from domain.eventstore.store import RecordedEvent, head_on, read_after
from domain.eventstore.tables import events
from integration.contract import to_message
from readmodels.notifications.messages import Notifier, ProjectionUpdate
from readmodels.stall_log import short
from readmodels.tables import checkpoints

if TYPE_CHECKING:  # nats-py is the optional `nats` extra: GraphQL names the relay without it
    from integration.jetstream import Ack, JetStreamPublisher

log = logging.getLogger("ordergraph.relay")

RELAY_NAME = "integration"  # its checkpoint row, and its name in `projections` and caughtUp

CONNECTING, LIVE, FAILED, STOPPED = "connecting", "live", "failed", "stopped"


@dataclass(frozen=True, slots=True)
class RelayStatus:
    """What operators see (for /readyz and /metrics): where the relay is and why not further."""

    name: str
    state: str  # connecting | live | failed | stopped
    position: int  # last event acknowledged by the broker and checkpointed
    head: int
    lag: int  # events not yet published
    lag_seconds: float  # age of the oldest event not yet published (0 when caught up)
    last_error: str | None
    last_error_at: datetime | None
    published: int  # PubAcks that stored a new message, since this process started
    duplicates: int  # PubAcks that said "duplicate": re-sent after a crash or a retry
    connected: bool


def waves(orders: Sequence[str]) -> list[list[int]]:
    """Indexes of a batch's events (given by their order's stream, in position order) in
    publishing waves: at most one event per order in a wave, the n-th of an order in wave n."""
    result: list[list[int]] = []
    depth: dict[str, int] = {}
    for index, order in enumerate(orders):
        wave = depth.get(order, 0)
        depth[order] = wave + 1
        if wave == len(result):
            result.append([])
        result[wave].append(index)
    return result


class Relay:
    def __init__(
        self,
        engine: AsyncEngine,
        publisher: JetStreamPublisher,
        notifier: Notifier,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 10.0,
        name: str = RELAY_NAME,
    ) -> None:
        self._engine = engine
        self.publisher = publisher
        self._notifier = notifier
        self.batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self.name = name
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.state = STOPPED
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.published = 0
        self.duplicates = 0

    def wake(self, _position: int = 0) -> None:
        """New events were appended (EventStore.on_append hook): look now."""
        self._wake.set()

    async def start(self, *, wake_on_announced_appends: bool = False) -> None:
        """Run in the background. It connects by itself, retrying while the broker is away:
        start-up (and every command) goes on without it."""
        await self._ensure_checkpoint()
        if wake_on_announced_appends:
            subscribed = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._wake_on_appends(subscribed)))
            await subscribed.wait()
        self.state = CONNECTING
        self._tasks.append(asyncio.create_task(self._run(), name="relay"))

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._stopping = False
        self.state = STOPPED
        await self.publisher.close()

    async def rewind(self, position: int) -> None:
        """Publish again from ``position`` on (``ordergraph relay --from``): the same ids, so
        what the broker saw within its duplicate window is dropped, and consumers that keep
        an inbox drop the rest."""
        await self._ensure_checkpoint()
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                checkpoints.update()
                .where(checkpoints.c.name == self.name)
                .values(position=max(position - 1, 0), updated_at=datetime.now(UTC))
            )

    async def drain(self) -> int:
        """Connect if needed and publish up to the head now; returns how many events were
        published. Raises what stopped it (the checkpoint stays before the culprit)."""
        await self._ensure_checkpoint()
        await self.publisher.connect()
        total = 0
        while sent := await self.step():
            total += sent
        return total

    async def _ensure_checkpoint(self) -> None:
        # Look before writing: on SQLite a write waits for every writer ahead of it.
        async with reader(self._engine).connect() as conn:
            found = await conn.scalar(
                sa.select(checkpoints.c.name).where(checkpoints.c.name == self.name)
            )
        if found is None:
            # ON CONFLICT: relays in two processes may both find it missing
            dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
            row = {"name": self.name, "position": 0, "state": LIVE, "updated_at": datetime.now(UTC)}
            async with write_transaction(self._engine) as conn:
                await conn.execute(dialect.insert(checkpoints).values(row).on_conflict_do_nothing())

    async def status(self) -> RelayStatus:
        async with reader(self._engine).connect() as conn:
            position = int(
                await conn.scalar(
                    sa.select(checkpoints.c.position).where(checkpoints.c.name == self.name)
                )
                or 0
            )
            head = await head_on(conn)
            oldest = await conn.scalar(
                sa.select(events.c.recorded_at)
                .where(events.c.position > position)
                .order_by(events.c.position)
                .limit(1)
            )
        lag_seconds = 0.0
        if oldest is not None:
            lag_seconds = max((datetime.now(UTC) - oldest).total_seconds(), 0.0)
        return RelayStatus(
            name=self.name,
            state=self.state,
            position=position,
            head=head,
            lag=max(head - position, 0),
            lag_seconds=lag_seconds,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            published=self.published,
            duplicates=self.duplicates,
            connected=self.publisher.connected,
        )

    async def _wake_on_appends(self, subscribed: asyncio.Event) -> None:
        async with self._notifier.subscribe() as updates:
            subscribed.set()
            async for update in updates:
                # appends announced by API replicas, or a projector (in any process) that
                # moved on: either way there is something new
                if not (isinstance(update, ProjectionUpdate) and update.projection == self.name):
                    self.wake()

    async def _run(self) -> None:
        backoff = 0.0
        while not self._stopping:
            self._wake.clear()
            try:
                if not self.publisher.ready:
                    if self.state != FAILED:  # a failure stays visible while we retry
                        self.state = CONNECTING
                    await self.publisher.connect()
                sent = await self.step()
                if self.state != LIVE:
                    await self._mark_live()
            except Exception as error:
                # A cancel (stop) that arrived inside nats-py's connect can come out as a
                # timeout (asyncio.wait_for, Python 3.11): never retry through it.
                task = asyncio.current_task()
                if self._stopping or (task is not None and task.cancelling()):
                    raise asyncio.CancelledError from error
                backoff = min(max(backoff * 2, 0.1), self._max_backoff)
                await self._record_failure(error)
                # Back off whatever is appended meanwhile: it is the broker we wait for.
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            if sent == 0:
                # Nothing new, or another relay holds the checkpoint (it publishes what is
                # new; if it dies we take over by the next poll at the latest).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)

    async def step(self) -> int:
        """Publish the next batch and checkpoint it; 0 when there is nothing to do (or another
        relay holds the checkpoint right now)."""
        if is_sqlite(self._engine):
            return await self._step_compare_and_set()
        async with write_transaction(self._engine) as conn:
            at = await self._lock_checkpoint(conn)
            if at is None:
                return 0
            recorded = await self._read(conn, at)
            if not recorded:
                return 0
            await self._publish(recorded)
            await self._save(conn, recorded[-1].position)
        await self._published(recorded[-1].position)
        return len(recorded)

    async def _step_compare_and_set(self) -> int:
        async with reader(self._engine).connect() as conn:
            at = int(
                await conn.scalar(
                    sa.select(checkpoints.c.position).where(checkpoints.c.name == self.name)
                )
                or 0
            )
            recorded = await self._read(conn, at)
        if not recorded:
            return 0
        await self._publish(recorded)
        async with write_transaction(self._engine) as conn:
            await self._save(conn, recorded[-1].position, expected=at)
        await self._published(recorded[-1].position)
        return len(recorded)

    async def _lock_checkpoint(self, conn: AsyncConnection) -> int | None:
        query = (
            sa.select(checkpoints.c.position)
            .where(checkpoints.c.name == self.name)
            .with_for_update(skip_locked=True)
        )
        position = await conn.scalar(query)
        return None if position is None else int(position)

    async def _read(self, conn: AsyncConnection, after: int) -> list[RecordedEvent]:
        return await read_after(conn, after, self.batch_size)

    async def _publish(self, recorded: Sequence[RecordedEvent]) -> list[Ack]:
        """Every event of the batch acknowledged by the broker, in per-order waves; raises
        (and nothing is checkpointed) if any is not."""
        prefix = self.publisher.subject_prefix
        acks: list[Ack] = []
        for wave in waves([r.stream_id for r in recorded]):
            # built as they go out, so the broker works while the rest are built
            acks.extend(await self.publisher.publish(to_message(recorded[i], prefix) for i in wave))
        duplicates = sum(ack.duplicate for ack in acks)
        self.duplicates += duplicates
        self.published += len(acks) - duplicates
        return acks

    async def _save(
        self, conn: AsyncConnection, position: int, expected: int | None = None
    ) -> None:
        update = checkpoints.update().where(checkpoints.c.name == self.name)
        if expected is not None:
            # compare-and-set: never move back a checkpoint another relay moved meanwhile
            update = update.where(checkpoints.c.position == expected)
        await conn.execute(
            update.values(
                position=position,
                state=LIVE,
                error=None,
                error_position=None,
                updated_at=datetime.now(UTC),
            )
        )

    async def _published(self, position: int) -> None:
        self.state = LIVE
        await self._notifier.publish(ProjectionUpdate(self.name, position))

    async def _mark_live(self) -> None:
        """Back from a failure with nothing to publish: the row should not say failed."""
        self.state = LIVE
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                checkpoints.update()
                .where(checkpoints.c.name == self.name, checkpoints.c.state != LIVE)
                .values(state=LIVE, error=None, error_position=None, updated_at=datetime.now(UTC))
            )

    async def _record_failure(self, error: Exception) -> None:
        self.state = FAILED
        self.last_error = short(error)  # "BrokerUnavailable: cannot connect to NATS at ..."
        self.last_error_at = datetime.now(UTC)
        log.warning("relay held back: %s", self.last_error)
        try:
            async with write_transaction(self._engine) as conn:
                at = await conn.scalar(
                    sa.select(checkpoints.c.position).where(checkpoints.c.name == self.name)
                )
                await conn.execute(
                    checkpoints.update()
                    .where(checkpoints.c.name == self.name)
                    .values(
                        state=FAILED,
                        error=self.last_error[:2000],
                        error_position=getattr(error, "position", int(at or 0) + 1),
                        updated_at=self.last_error_at,
                    )
                )
        except Exception:
            log.exception("relay could not record its failure")
