"""Inline projections: applied by the group-commit writer in the transaction of the events
they project, so that a command's position is visible in them when its answer is sent.

Each batch of appends, once its events are written and before it commits, folds them into
each inline projection from the domain events still in memory (nothing is read back or
decoded again) and advances its checkpoint: one transaction and one commit for the events
and their read models. The async projector (readmodels/projector.py) runs the same
``apply`` on the same tables; the two never apply the same event, and hand over to each
other without a gap:

- Inline applies only when the projection's checkpoint is exactly at the previous head (the
  last event before this batch) and live. Otherwise (a restart with the projector behind, a
  failure, an operator's skip pending, a rebuild that reset it) it leaves the batch to the
  projector, which catches up through it; the first batch after that finds the checkpoint
  at its previous head again and inline resumes.
- The checkpoint rows it applies are locked ``FOR UPDATE`` under the writer's append lock
  (PostgreSQL: ``LOCK TABLE events``, held to commit; SQLite: ``BEGIN IMMEDIATE``); a row
  behind is not locked at all. A batch that meets the projector (or a version switch)
  mid-pass waits for that pass to commit: the pass brings the checkpoint to the previous
  head, so the batch still applies inline. (Skipping the row would leave the batch to the
  projector and wake it, and the next batch would meet its next pass: under a steady load
  inline would not get the projections back.) The projector skips a row the writer holds.
  The append lock serializes batches across processes, and the previous head is read under
  it, so several API replicas stay exactly once and in order.
- Only the active version is applied inline (the one the checkpoint row names); a version
  being built stays with its builder, which switches to it as it always does.
- A projection that raises is rolled back to its savepoint and left behind; the append
  commits. The projector then meets the same event and records the failure as it does for
  any projection (state ``failed`` at that position, retried with back-off).

After the commit, the positions reached are announced through the notifier, as the
projector announces its passes, so that waiters and subscribers hear of them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.events import Event
from domain.eventstore import codec
from domain.eventstore.group_commit import AfterCommit, Written
from domain.eventstore.records import NewEvent
from domain.eventstore.tables import events
from readmodels.builds import LIVE
from readmodels.notifications.messages import Notifier, ProjectionUpdate
from readmodels.projection import Envelope, Projection
from readmodels.rows import upserts_together
from readmodels.stall_log import short
from readmodels.tables import checkpoints

log = logging.getLogger("ordergraph.inline")


# The checkpoints at the previous head (the last event before this batch's first), and live:
# only those are locked. A checkpoint behind is left unlocked, or the writer, back to back
# under load, would hold it from the projector that has to catch it up.
_DUE = (
    sa.select(checkpoints.c.name, checkpoints.c.version, checkpoints.c.code_version)
    .where(
        checkpoints.c.name.in_(sa.bindparam("names", expanding=True)),
        checkpoints.c.state == LIVE,
        checkpoints.c.position
        == sa.select(sa.func.coalesce(sa.func.max(events.c.position), 0))
        .where(events.c.position < sa.bindparam("first"))
        .scalar_subquery(),
    )
    .with_for_update(of=checkpoints)
)
_ADVANCE = (
    checkpoints.update()
    .where(checkpoints.c.name.in_(sa.bindparam("names", expanding=True)))
    .values(position=sa.bindparam("head"), updated_at=sa.bindparam("now"))
)


class InlineProjections:
    """The ``EventStore.in_each_batch`` work that applies the given projections inline."""

    def __init__(self, projections: Sequence[Projection], notifier: Notifier) -> None:
        self.projections = {p.name: p for p in projections}
        self._names = list(self.projections)
        self._notifier = notifier
        # After the latest committed batch: the inline projections it left to the projector.
        self.left_behind: frozenset[str] = frozenset()
        # Called after each committed batch, as the projector's: (projections applied,
        # events, seconds spent applying them).
        self.pass_observers: list[Callable[[Sequence[str], int, float], None]] = []

    async def __call__(self, conn: AsyncConnection, written: Sequence[Written]) -> AfterCommit:
        started = time.perf_counter()
        head = written[-1].position
        first = written[0].position
        found = await conn.execute(_DUE, {"names": self._names, "first": first})
        due = []
        for row in found:
            projection = self.projections[row.name]
            if row.code_version <= projection.version:  # else newer code feeds it
                due.append(projection.at(row.version))
        applied = await self._apply(conn, due, _Envelopes(written)) if due else []
        if applied:
            now = written[-1].recorded_at
            await conn.execute(_ADVANCE, {"names": applied, "head": head, "now": now})
        behind = frozenset(self._names) - set(applied)
        elapsed = time.perf_counter() - started

        def committed() -> None:
            self.left_behind = behind
            if applied:
                self._notifier.announce([ProjectionUpdate(name, head) for name in applied])
                for observer in self.pass_observers:
                    observer(applied, len(written), elapsed)

        return committed

    async def _apply(
        self, conn: AsyncConnection, due: list[Projection], batch: _Envelopes
    ) -> list[str]:
        """The names of the projections applied. All in one savepoint first (two statements
        for the lot, and their upserts written together); if that fails, each in its own, so
        that only the culprit is left out."""
        shares = {}
        for projection in due:
            share = batch.for_projection(projection.handles)
            if share is not None:  # else it handles an event that cannot be decoded
                shares[projection.name] = (projection, share)
        if len(shares) > 1:
            try:
                async with conn.begin_nested(), upserts_together(conn):
                    for projection, share in shares.values():
                        if share:
                            await projection.apply(conn, share)
                return list(shares)
            except Exception:
                pass  # found and said below, one projection at a time
        applied = []
        for name, (projection, share) in shares.items():
            try:
                async with conn.begin_nested():
                    if share:
                        await projection.apply(conn, share)
            except Exception as error:
                # Left behind: the projector takes it from its checkpoint, meets this same
                # failure and records it (or, if it was passing, applies it).
                log.warning("projection %s left to the projector: %s", name, short(error))
                continue
            applied.append(name)
        return applied


class _Envelopes:
    """The batch's events as projections take them, built once for all of them."""

    def __init__(self, written: Sequence[Written]) -> None:
        self._all: list[tuple[str, Envelope | None]] = []
        for item in written:
            new = item.event
            event = new.source if isinstance(new.source, Event) else _decoded(new)
            envelope = None
            if event is not None:
                envelope = Envelope(
                    item.position, item.stream_version, event, new.metadata, item.recorded_at
                )
            self._all.append((new.event_type, envelope))

    def for_projection(self, handles: Collection[str] | None) -> list[Envelope] | None:
        """Its share of the batch; None if an event in it cannot be decoded."""
        share = []
        for event_type, envelope in self._all:
            if handles is None or event_type in handles:
                if envelope is None:
                    return None
                share.append(envelope)
        return share


def _decoded(new: NewEvent) -> Event | None:
    """An event appended without its domain event (by a tool, or a test): decoded from the
    data in memory. None when it cannot be: the projector records it as poisoned."""
    try:
        return codec.decode(new.event_type, new.schema_version, new.data)
    except Exception:
        return None
