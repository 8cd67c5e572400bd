"""Waiting for a position: a position this process has heard a projection reach costs no
read; anything else is read, on both databases."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from domain.bus import CommandBus
from integration.relay import RELAY_NAME
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.notifications.messages import ProjectionUpdate
from readmodels.projector import Projector, ensure_checkpoints
from tests.support.factories import place_order
from tests.support.observed import ObservedWaiter
from tests.support.read_models import catch_up_all


async def test_a_wait_for_a_position_already_heard_reads_nothing(
    engine: AsyncEngine, bus: CommandBus, projector: Projector, notifier: InProcessNotifier
) -> None:
    placed = await bus.dispatch(place_order())
    await catch_up_all(projector)  # each pass is announced through the notifier
    waiter = ObservedWaiter(engine, notifier)

    assert await waiter.wait_for(placed.position)
    assert waiter.reads == 0


async def test_a_wait_beyond_what_was_heard_reads_the_checkpoints(
    engine: AsyncEngine, bus: CommandBus, projector: Projector, notifier: InProcessNotifier
) -> None:
    first = await bus.dispatch(place_order())
    await catch_up_all(projector)
    second = await bus.dispatch(place_order())  # not projected yet
    waiter = ObservedWaiter(engine, notifier)

    assert await waiter.wait_for(first.position)
    assert waiter.reads == 0
    assert not await waiter.wait_for(second.position, within=0.05)
    assert waiter.reads >= 1


async def test_a_checkpoint_that_can_move_back_is_always_read(
    engine: AsyncEngine, notifier: InProcessNotifier
) -> None:
    # The relay's checkpoint moves back on ``ordergraph relay --from``: heard is not enough.
    await ensure_checkpoints(engine, [RELAY_NAME])
    await notifier.publish(ProjectionUpdate(RELAY_NAME, 3))
    waiter = ObservedWaiter(engine, notifier, [RELAY_NAME])

    assert not await waiter.wait_for(3, within=0.05)
    assert waiter.reads >= 1
