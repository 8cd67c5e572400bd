"""Logging a stalled projection loudly but once: at each change of state, then a reminder
at a fixed interval while it lasts, instead of a line per retry."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from readmodels.feed import PoisonedEvent

REMINDER_SECONDS = 60.0
ERROR_CHARS = 300  # what a checkpoint keeps of an error: enough to say what, not a dump


class StallLog:
    def __init__(
        self,
        log: logging.Logger,
        *,
        reminder_seconds: float = REMINDER_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._reminder = reminder_seconds
        self._clock = clock
        self._stalls: dict[str, tuple[str, float]] = {}  # projection -> (what, last logged)

    def stalled(self, projection: str, what: str, cause: BaseException) -> None:
        """``what`` says where and why (it is compared to tell a new stall from the same)."""
        now = self._clock()
        previous = self._stalls.get(projection)
        if previous is None or previous[0] != what:
            self._log.error(
                "projection %s stopped: %s",
                projection,
                what,
                exc_info=(type(cause), cause, cause.__traceback__),
            )
        elif now - previous[1] >= self._reminder:
            self._log.error("projection %s still stopped: %s", projection, what)
        else:
            return
        self._stalls[projection] = (what, now)

    def running(self, projection: str) -> None:
        if self._stalls.pop(projection, None) is not None:
            self._log.info("projection %s resumed", projection)


def short(error: BaseException) -> str:
    """One line that says what went wrong, without a traceback or a page of SQL."""
    if isinstance(error, PoisonedEvent):
        text = f"cannot decode the event: {type(error.cause).__name__}: {error.cause}"
    else:
        text = f"{type(error).__name__}: {error}"
    text = text.splitlines()[0] if text else text
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"
