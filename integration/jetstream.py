"""The JetStream side of the relay: one connection, the stream checked at start-up, and
publishes that wait for the broker's acknowledgement (PubAck)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import Header, StreamConfig

from integration.contract import IntegrationMessage

log = logging.getLogger("ordergraph.relay")

FLUSH_EVERY = 100  # messages buffered before the client gets a turn to write them
DUPLICATE_WINDOW_SECONDS = 120.0  # JetStream's default, stated so the docs can rely on it


class BrokerUnavailable(Exception):
    """The broker did not take the batch (down, slow, or it refused): nothing is checkpointed."""


class StreamMisconfigured(Exception):
    """A stream of that name exists but does not hold our subjects."""


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int
    duplicate: bool  # the broker had this message id already (within its duplicate window)


class JetStreamPublisher:
    def __init__(
        self,
        url: str,
        stream: str,
        subject_prefix: str,
        *,
        ack_timeout: float = 5.0,
        duplicate_window: float = DUPLICATE_WINDOW_SECONDS,
    ) -> None:
        self.url = url
        self.stream = stream
        self.subject_prefix = subject_prefix
        self._ack_timeout = ack_timeout
        self._duplicate_window = duplicate_window
        self._nc: Client | None = None
        self._last_error: Exception | None = None
        self._inbox: str | None = None  # where PubAcks come back: <inbox>.<token>
        self._pending: dict[str, asyncio.Future[Ack]] = {}
        self._sent = 0
        self._stream_checked = False

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    @property
    def ready(self) -> bool:
        return self.connected and self._stream_checked

    async def connect(self) -> None:
        """Connect (or raise BrokerUnavailable) and create or check the stream; a no-op when
        ``ready``. After a refused publish the stream is checked again (and re-created if
        someone deleted it).

        nats-py's own reconnecting is off. With it (and without it, unless the attempts are
        bounded) a first connect to a broker that is down does not return for minutes, and
        publishes made while it reconnects are buffered and then time out (nats.py #354).
        The relay calls this again, with back-off, whenever the connection is gone, so each
        outage ends with a fresh connection and a fresh check of the stream."""
        if self._nc is not None and not self._nc.is_connected:
            await self.close()
        if self._nc is None:
            try:
                self._nc = await nats.connect(
                    self.url,
                    connect_timeout=2,
                    allow_reconnect=False,
                    # the first connect tries the server this many more times: see above
                    max_reconnect_attempts=1,
                    reconnect_time_wait=0.2,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnect,
                )
            except (OSError, nats.errors.Error, TimeoutError) as error:
                cause = self._last_error or error  # NoServersError says less than its cause
                raise BrokerUnavailable(
                    f"cannot connect to NATS at {self.url}: {cause!r}"
                ) from error
        if not self._stream_checked:
            await self.ensure_stream()
            self._stream_checked = True

    async def ensure_stream(self) -> None:
        js = self._client().jetstream(timeout=self._ack_timeout)
        wanted = f"{self.subject_prefix}.>"
        try:
            try:
                info = await js.stream_info(self.stream)
            except nats.js.errors.NotFoundError:
                await js.add_stream(
                    StreamConfig(
                        name=self.stream,
                        subjects=[wanted],
                        duplicate_window=self._duplicate_window,
                    )
                )
                log.info("created JetStream stream %s for %s", self.stream, wanted)
                return
        except (nats.errors.Error, TimeoutError) as error:
            raise BrokerUnavailable(f"JetStream stream {self.stream}: {error!r}") from error
        subjects = list(info.config.subjects or [])
        if wanted not in subjects and ">" not in subjects:
            raise StreamMisconfigured(
                f"JetStream stream {self.stream} holds subjects {subjects}, not {wanted!r}:"
                " set NATS_STREAM to another name or NATS_SUBJECT_PREFIX to match it"
            )

    async def publish(self, messages: Iterable[IntegrationMessage]) -> list[Ack]:
        """Publish all at once (pipelined on one connection) and wait for every PubAck;
        raise BrokerUnavailable if any is missing. The caller puts at most one message per
        order in a call, so a failure can never leave a later event of an order stored
        before an earlier one.

        ``messages`` may be built as they are taken (a generator): every ``FLUSH_EVERY`` the
        event loop gets a turn, the client writes what is buffered, and the broker stores
        those while the next ones are built. An exception from the generator ends the call
        with nothing acknowledged to the caller.

        This is what nats-py's ``publish_async`` does (a publish with a reply subject, the
        PubAck arriving there), minus its per-message wait on a semaphore: that wait yields
        to the event loop after every message, so its flusher wrote each one to the socket
        alone. Here the whole call is buffered and goes out in a few writes."""
        nc = self._client()
        if not nc.is_connected:
            # nats-py would buffer the publish until it reconnects; fail now instead, so
            # the state says "broker unavailable" and nothing piles up in the buffer.
            raise BrokerUnavailable(f"not connected to NATS at {self.url}")
        if self._inbox is None:
            inbox = nc.new_inbox()
            await nc.subscribe(f"{inbox}.*", cb=self._on_ack)
            self._inbox = inbox
        loop = asyncio.get_running_loop()
        tokens: list[str] = []
        futures: list[asyncio.Future[Ack]] = []
        try:
            for message in messages:
                self._sent += 1
                token = str(self._sent)
                future: asyncio.Future[Ack] = loop.create_future()
                self._pending[token] = future
                tokens.append(token)
                futures.append(future)
                headers = {**message.headers, Header.EXPECTED_STREAM: self.stream}
                await nc.publish(
                    message.subject, message.body, reply=f"{self._inbox}.{token}", headers=headers
                )
                if len(futures) % FLUSH_EVERY == 0:
                    await asyncio.sleep(0)  # the flusher's turn: see above
            async with asyncio.timeout(self._ack_timeout):
                return await asyncio.gather(*futures)
        except (nats.errors.Error, TimeoutError) as error:
            raise BrokerUnavailable(
                f"publish to {self.stream} not acknowledged: {error!r}"
            ) from error
        finally:
            for token in tokens:
                self._pending.pop(token, None)
            for future in futures:
                future.cancel()  # a no-op for those done; nobody waits for the rest

    async def _on_ack(self, msg: Msg) -> None:
        future = self._pending.get(msg.subject.rsplit(".", 1)[-1])
        if future is None or future.done():
            return  # late: its publish call gave up already (and will be retried)
        if msg.headers and msg.headers.get(Header.STATUS) == "503":
            self._stream_checked = False  # deleted under us? look again before the retry
            future.set_exception(
                BrokerUnavailable(f"no JetStream stream answers for {self.stream}")
            )
            return
        reply = json.loads(msg.data)
        if "error" in reply:
            self._stream_checked = False
            future.set_exception(BrokerUnavailable(f"JetStream refused: {reply['error']}"))
        else:
            future.set_result(Ack(int(reply["seq"]), bool(reply.get("duplicate"))))

    async def close(self) -> None:
        if self._nc is not None:
            nc, self._nc = self._nc, None
            self._inbox = None  # its subscription ends with the connection
            self._stream_checked = False
            if nc.is_connected:
                try:
                    await nc.drain()
                    return
                except (nats.errors.Error, TimeoutError):
                    pass
            await nc.close()

    async def _on_disconnect(self) -> None:
        if self._nc is not None:  # not our own close()
            log.warning("NATS: disconnected from %s; the relay will reconnect", self.url)

    async def _on_error(self, error: Exception) -> None:
        self._last_error = error
        log.warning("NATS: %r", error)

    def _client(self) -> Client:
        if self._nc is None:
            raise BrokerUnavailable("not connected to NATS (connect() first)")
        return self._nc
