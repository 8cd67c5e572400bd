"""A deadline for a request's headers: uvicorn has none (its keep-alive timeout is reset by
every byte), so a client sending a header byte now and then holds a connection forever.

The deadline starts when a connection opens and when a request begins; it ends when the
headers are complete. The body has its own deadline in the app (graph/http.py).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger("ordergraph.graph")


class HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout = 10.0  # HEADER_TIMEOUT, set by graph/runtime/server.py's worker_app
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            logger.info(
                "closing a connection from %s: headers not received within %s s",
                self.client,
                self.header_timeout,
            )
            self.transport.close()


def http_protocol(header_timeout: float) -> type[HeaderDeadlineProtocol]:
    """uvicorn's ``http=`` for a server whose clients must send their headers in time."""
    return type(
        "HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": header_timeout}
    )
