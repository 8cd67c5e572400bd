"""A failed projection, handled without guesswork: ``ordergraph projections`` says where and
why it stopped; ``retry`` tries again now; ``skip`` passes exactly the one event it is
stopped at, on record with who, when and why, shown forever after and honoured by every later
version. On both databases."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.bus import CommandBus
from domain.commands import CancelOrder
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.operations import OperationRefused, Skipped, retry, skip
from readmodels.projection import Envelope, Projection
from readmodels.projector import ProjectionFailed, Projector
from readmodels.queries import ReadModelQueries
from readmodels.rebuild import rebuild
from readmodels.registry import all_projections
from readmodels.waiting import CheckpointWaiter
from tests.support.factories import place_order
from tests.support.locks import until_waiting_for_a_lock
from tests.support.read_models import BrokenOnCancel, insert_raw_event, statuses_when_settled

DEADLINE = 60.0


async def cli(database_url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.runtime.cli",
        *args,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "USER": "ops-alice",
            "LOGNAME": "ops-alice",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), DEADLINE)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_skip_passes_exactly_the_poisoned_event_on_record_and_later_versions_honour_it(
    engine: AsyncEngine,
    database_url: str,
    bus: CommandBus,
    notifier: InProcessNotifier,
    queries: ReadModelQueries,
    waiter: CheckpointWaiter,
) -> None:
    placed = await bus.dispatch(place_order())
    # A shipping address change without its address: only order views read that type.
    poisoned = await insert_raw_event(
        engine, "hand-edited", 1, "ShippingAddressChanged", '{"order_id": "hand-edited"}'
    )
    await bus.dispatch(place := place_order())
    after = await bus.dispatch(CancelOrder(order_id=place.order_id, reason="changed mind"))
    head = after.position
    projector = Projector(engine, all_projections(), notifier, max_backoff=0.2)
    await projector.start()
    try:
        found = await statuses_when_settled(queries, waiter, head, {"order_views"})
        assert (found["order_views"].position, found["order_views"].error_position) == (
            placed.position,
            poisoned,
        )
        code, out, _ = await cli(database_url, "projections")
        assert code == 0
        assert f"order_views: version 1 active, failed at {placed.position}" in out
        assert f"error at position {poisoned}: cannot decode the event" in out

        # Retrying does not help this one: it fails again, at the same event, on record.
        code, out, _ = await cli(database_url, "projections", "retry", "order_views")
        assert code == 0
        assert "retried order_views (versions 1)" in out
        assert f"error at position {poisoned}" in out

        # Only the event it is stopped at can be skipped, and only with a reason.
        code, _, err = await cli(
            database_url, "projections", "skip", "order_views", "--position",
            str(after.position), "--reason", "x",
        )  # fmt: skip
        assert code == 2
        assert f"order_views is not stopped at position {after.position}" in err
        assert f"(stopped at {poisoned})" in err
        code, _, err = await cli(
            database_url, "projections", "skip", "daily_sales", "--position", str(poisoned),
            "--reason", "x",
        )  # fmt: skip
        assert code == 2
        assert "daily_sales is not stopped at position" in err

        code, out, err = await cli(
            database_url, "projections", "skip", "order_views", "--position", str(poisoned),
            "--reason", "hand edit without an address; ticket OPS-7",
        )  # fmt: skip
        assert code == 0, err
        assert f"skipped position {poisoned} (ShippingAddressChanged) for order_views" in out
        assert await waiter.wait_for(head, ["order_views"], within=DEADLINE)
    finally:
        await projector.stop()

    view = await queries.order(place.order_id)
    assert view is not None
    assert (view.status, view.version) == ("CANCELLED", 2)  # the events after it applied
    status = {s.name: s for s in await queries.projection_statuses()}["order_views"]
    assert (status.state, status.error, status.lag) == ("live", None, 0)
    (record,) = status.skipped
    assert (record.position, record.version, record.event_type) == (
        poisoned,
        1,
        "ShippingAddressChanged",
    )
    assert record.reason == "hand edit without an address; ticket OPS-7"
    assert record.skipped_by.startswith("ops-alice@")
    assert record.skipped_by.endswith("(cli)")
    assert all(not s.skipped for s in await queries.projection_statuses() if s.name != status.name)

    # A new version replays from the first event: it passes the same event, on the same
    # record, and still shows it.
    done = await rebuild(engine, all_projections(), notifier)
    assert done.versions["order_views"] == 2
    status = {s.name: s for s in await queries.projection_statuses()}["order_views"]
    assert (status.version, status.state, status.position) == (2, "live", head)
    assert [k.position for k in status.skipped] == [poisoned]
    code, out, _ = await cli(database_url, "projections")
    assert f"skipped position {poisoned} (ShippingAddressChanged) in v1 by ops-alice@" in out
    assert "hand edit without an address; ticket OPS-7" in out


async def test_retry_resumes_a_failed_projection_now_once_its_cause_is_gone(
    engine: AsyncEngine,
    bus: CommandBus,
    notifier: InProcessNotifier,
    queries: ReadModelQueries,
) -> None:
    broken = BrokenOnCancel(all_projections()[1])
    await bus.dispatch(place := place_order(customer_id="c-1"))
    cancelled = await bus.dispatch(CancelOrder(order_id=place.order_id, reason="x"))
    with pytest.raises(ProjectionFailed):
        await Projector(engine, [broken], notifier).catch_up(broken.name)
    with pytest.raises(OperationRefused, match="daily_sales has nothing failed to retry"):
        await retry(engine, [broken, *all_projections()[2:]], notifier, "daily_sales")

    assert await retry(engine, [broken], notifier, broken.name) == [1]  # still broken
    status = {s.name: s for s in await queries.projection_statuses()}[broken.name]
    assert (status.state, status.error_position) == ("failed", cancelled.position)

    broken.broken = False
    assert await retry(engine, [broken], notifier, broken.name) == [1]
    status = {s.name: s for s in await queries.projection_statuses()}[broken.name]
    assert (status.state, status.position, status.error) == ("live", cancelled.position, None)
    summary = await queries.customer("c-1")
    assert summary is not None
    assert summary.cancelled_orders == 1
    with pytest.raises(OperationRefused, match="a reason is required"):
        await skip(engine, all_projections(), broken.name, cancelled.position, " ", "me")
    assert set(PROJECTION_NAMES) >= {broken.name}


class SkippedWhileFailing(BrokenOnCancel):
    """Fails on a cancellation, as BrokenOnCancel; once armed, an operator's skip of it is
    sent while this pass holds the checkpoint, so it lands just as the pass rolls back."""

    def __init__(self, inner: Projection, engine: AsyncEngine, position: int) -> None:
        super().__init__(inner)
        self.engine, self.position = engine, position
        self.skipping: asyncio.Task[Skipped] | None = None
        self.armed = False

    async def apply(self, conn: AsyncConnection, batch: Sequence[Envelope]) -> None:
        if self.armed and self.skipping is None:
            self.skipping = asyncio.create_task(
                skip(self.engine, [self], self.name, self.position, "a hand edit", "ops")
            )
            await until_waiting_for_a_lock(self.engine, self.skipping)
        await super().apply(conn, batch)


# PostgreSQL: there the skip queues on the pass's row lock, so it commits first every time.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_skip_that_lands_while_a_pass_fails_again_is_not_undone_by_that_failure(
    engine: AsyncEngine, bus: CommandBus, notifier: InProcessNotifier, queries: ReadModelQueries
) -> None:
    await bus.dispatch(place := place_order(customer_id="c-1"))
    cancelled = await bus.dispatch(CancelOrder(order_id=place.order_id, reason="x"))
    racing = SkippedWhileFailing(all_projections()[1], engine, cancelled.position)
    projector = Projector(engine, [racing], notifier, batch_size=1)
    with pytest.raises(ProjectionFailed):
        await projector.catch_up(racing.name)

    racing.armed = True
    # The pass fails again, after the skip was sent; the skip commits first, so the pass's
    # failure does not stick, and the pass goes on from the skipped event.
    await projector.advance(racing, 1)
    assert racing.skipping is not None
    await racing.skipping

    status = {s.name: s for s in await queries.projection_statuses()}[racing.name]
    assert (status.state, status.position, status.error) == ("live", cancelled.position, None)
