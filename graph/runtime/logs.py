"""Logging: JSON lines for machines, one readable line for people, and the request id on both.

The standard library's ``logging`` rather than structlog: uvicorn, SQLAlchemy, strawberry and
asyncpg all log through it, so one formatter on the root handler puts every line of the
process, ours and theirs, in one format with the request id attached; structlog would need
this same bridge for them and adds a dependency for what is a short formatter here.

The request id lives in a context variable set by the request middleware
(graph/runtime/request_log.py): asyncio copies it into every task a request starts, so any line
logged while handling that request carries it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graph.runtime.settings import Settings

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ordergraph_request_id", default=None
)

# LogRecord attributes that are not "extra" fields passed by the caller.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colours
}


class RequestIdFilter(logging.Filter):
    """Stamp each record with the request id of the request being handled (or None)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, request id, any extra
    fields, and the exception's traceback as text."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,  # which worker, with --workers
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request id] message key=value ...`` for a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        rid = extras.pop("request_id", None)
        if rid:
            head, _, rest = line.partition(f" {record.name} ")
            line = f"{head} {record.name} [{rid}] {rest}"
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items() if v is not None)
        return line


def wants_json(log_format: str, stream: Any = None) -> bool:
    if log_format != "auto":
        return log_format == "json"
    stream = sys.stderr if stream is None else stream
    return not (hasattr(stream, "isatty") and stream.isatty())


def configure_logging(settings: Settings, stream: Any = None) -> None:
    """The root logger writes to stderr, JSON or text per LOG_FORMAT; libraries' loggers
    (uvicorn's included, started with log_config=None) propagate to it."""
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(
        JsonFormatter() if wants_json(settings.log_format, handler.stream) else TextFormatter()
    )
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    # Our request line (graph/runtime/request_log.py) replaces uvicorn's access line, which knows
    # neither
    # the request id nor the operation; each worker process must be told again.
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    # alembic announces its plugins and dialect at info on every check: noise at each start
    logging.getLogger("alembic").setLevel(logging.WARNING)
