"""A stopped projection tells clients a short code and where it stopped; the driver's text,
which can name tables, values and server internals, stays in the log."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from domain.bus import CommandBus
from graph.types import ProjectionStatus
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.projection import Envelope, Projection
from readmodels.projector import ProjectionFailed, Projector, public_error
from readmodels.queries import ReadModelQueries
from readmodels.rebuild import INTERRUPTED_NOTE
from readmodels.tables import order_views
from tests.support.factories import place_order


class RefusedByTheDatabase(Projection):
    name = "order_views"
    tables = (order_views,)

    async def apply(self, conn: AsyncConnection, batch: Sequence[Envelope]) -> None:
        await conn.execute(sa.text("SELECT secret_column FROM order_views"))


async def test_clients_see_a_short_code_and_the_log_has_the_detail(
    engine: AsyncEngine,
    bus: CommandBus,
    notifier: InProcessNotifier,
    queries: ReadModelQueries,
    caplog: pytest.LogCaptureFixture,
) -> None:
    placed = await bus.dispatch(place_order())
    projector = Projector(engine, [RefusedByTheDatabase()], notifier)

    with pytest.raises(ProjectionFailed):
        await projector.catch_up("order_views")

    (status,) = await queries.projection_statuses(["order_views"])
    shown = ProjectionStatus.of(status).error_text  # what `error` shows (to staff)
    assert shown == (
        f"database_refused: the projection stopped at position {placed.position};"
        " the detail is in the server log"
    )
    assert "secret_column" in caplog.text
    assert any(r.levelno == logging.ERROR for r in caplog.records)


def test_each_kind_of_stop_has_its_code_and_notes_pass_through() -> None:
    assert public_error("cannot decode the event: KeyError: 'lines'", 7) == (
        "unreadable_event: the projection stopped at position 7; the detail is in the server log"
    )
    assert (public_error("ValueError: secret", 3) or "").startswith("projection_error: ")
    assert (public_error("DataError: numeric field overflow", 3) or "").startswith(
        "database_refused: "
    )
    assert public_error(INTERRUPTED_NOTE, None) == INTERRUPTED_NOTE
    assert public_error(None, None) is None
