"""orderChanged routing fails loudly at start-up and never goes silent afterwards."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from typing import Any, cast

import pytest

from readmodels import order_changes
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.notifications.messages import Notification, ProjectionUpdate
from readmodels.order_changes import OrderChanges
from readmodels.queries import ReadModelQueries
from readmodels.waiting import CheckpointWaiter


class Checkpoints:
    """The one question OrderChanges asks of the waiter, answered from a dict."""

    def __init__(self, broken: bool = False) -> None:
        self.broken = broken
        self.order_views = 0

    async def positions(self, names: Collection[str] | None = None) -> dict[str, int]:
        if self.broken:
            raise OSError("database unreachable")
        return {"order_views": self.order_views}


class Views:
    """Order views by id, and which of them changed: what OrderChanges reads."""

    def __init__(self) -> None:
        self.views: dict[str, Any] = {}

    async def order(self, order_id: str) -> Any:
        return self.views.get(order_id)

    async def changed_orders(self, after: int, upto: int) -> list[str]:
        return [i for i, v in self.views.items() if after < v.last_position <= upto]


class View:
    def __init__(self, last_position: int) -> None:
        self.last_position = last_position


class OnceBrokenNotifier(InProcessNotifier):
    """Its first subscription breaks after it has been taken; later ones work."""

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions = 0

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[Notification]]:
        self.subscriptions += 1
        if self.subscriptions > 1:
            async with super().subscribe() as updates:
                yield updates
            return

        async def broken() -> AsyncIterator[Notification]:
            await asyncio.sleep(0.05)
            raise ConnectionResetError("listener lost")
            yield  # pragma: no cover - makes this an async generator

        yield broken()


def routing(notifier: InProcessNotifier, checkpoints: Checkpoints, views: Views) -> OrderChanges:
    return OrderChanges(
        cast(ReadModelQueries, views), notifier, cast(CheckpointWaiter, checkpoints)
    )


async def test_start_up_fails_with_the_cause_instead_of_hanging() -> None:
    changes = routing(InProcessNotifier(), Checkpoints(broken=True), Views())
    with pytest.raises(OSError, match="unreachable"):
        await asyncio.wait_for(changes.start(), timeout=5)


async def test_routing_starts_again_after_a_failure_and_reads_what_changed_meanwhile(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(order_changes, "RESTART_DELAY", 0.01)
    notifier, checkpoints, views = OnceBrokenNotifier(), Checkpoints(), Views()
    changes = routing(notifier, checkpoints, views)
    await changes.start()
    try:
        async with changes.watch("o-1") as watch:
            # Changed while routing was down: only the re-read after the restart can see it.
            views.views["o-1"] = View(last_position=1)
            checkpoints.order_views = 1
            async with asyncio.timeout(5):
                first = await anext(aiter(watch.views()))
            assert first.last_position == 1
            assert notifier.subscriptions >= 2

            views.views["o-1"] = View(last_position=2)
            checkpoints.order_views = 2
            await notifier.publish(ProjectionUpdate("order_views", 2))
            async with asyncio.timeout(5):
                second = await anext(aiter(watch.views()))
            assert second.last_position == 2
    finally:
        await changes.stop()
