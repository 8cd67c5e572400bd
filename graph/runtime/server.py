"""``ordergraph serve``: uvicorn with one worker, or several on PostgreSQL.

Every worker is set up the same way by ``worker_app`` (uvicorn's app factory): logging, the
app, then the garbage-collector tuning. With several workers, uvicorn starts them as fresh
processes that read their settings from the environment, so the command line's choices are
put there first; each worker builds its own engine, notifier (its own LISTEN connection) and,
with RUN_PROJECTOR, projector instance (projector instances take turns per batch).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from starlette.applications import Starlette

from graph.runtime.gc_tuning import tune_gc
from graph.runtime.settings import InvalidSettings, Settings
from graph.runtime.startup import USAGE, StartupError, check_database


def worker_app(settings: Settings | None = None) -> Starlette:
    """The app of one worker process, as uvicorn's factory (``graph.runtime.server:worker_app``)."""
    from graph.runtime.app import create_app
    from graph.runtime.logs import configure_logging
    from graph.runtime.slow_clients import HeaderDeadlineProtocol

    settings = settings or Settings.from_env()
    configure_logging(settings)
    # uvicorn builds the protocol from its import path (in every worker process): its
    # deadline is set here, in the process that serves.
    HeaderDeadlineProtocol.header_timeout = settings.header_timeout
    app = create_app(settings)
    tune_gc()
    return app


def _check_tracing(settings: Settings) -> None:
    if settings.tracing:
        from graph.runtime.tracing import available

        if not available():
            raise StartupError(
                "TRACING=true needs OpenTelemetry: pip install 'ordergraph[otel]'", USAGE
            )


def _check_auth(settings: Settings) -> None:
    """Before touching the database: PostgreSQL and production need a deliberate AUTH."""
    try:
        settings.auth_mode  # noqa: B018 - raises InvalidSettings
    except InvalidSettings as error:
        raise StartupError("; ".join(error.problems), USAGE) from None


async def _preflight(settings: Settings) -> None:
    from graph.runtime.composition import engine_for

    engine = engine_for(settings)
    try:
        await check_database(engine, settings, migrate=settings.is_sqlite)
    finally:
        await engine.dispose()


def _share_settings(settings: Settings) -> None:
    """Workers are new processes reading the environment: hand them the command line's
    choices, and a directory for their metrics (emptied: old files would add stale counts)."""
    os.environ["DATABASE_URL"] = settings.database_url
    os.environ["HOST"] = settings.host
    os.environ["PORT"] = str(settings.port)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
    else:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="ordergraph-metrics-")


def serve(settings: Settings) -> int:
    import uvicorn

    from graph.runtime.logs import configure_logging

    if settings.workers > 1 and settings.is_sqlite:
        raise StartupError(
            f"--workers {settings.workers} needs PostgreSQL: SQLite takes one writer at a "
            "time and its notifications do not cross processes; run one worker, or set "
            "DATABASE_URL=postgresql://...",
            USAGE,
        )
    _check_tracing(settings)
    _check_auth(settings)
    configure_logging(settings)
    asyncio.run(_preflight(settings))
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_config": None,  # our handler on the root logger (graph/runtime/logs.py)
        "log_level": settings.log_level,
        # ours is graph/runtime/request_log.py, with the request id and operation
        "access_log": False,
        "loop": "auto",  # uvloop when installed (uvicorn[standard])
        "http": "graph.runtime.slow_clients:HeaderDeadlineProtocol",  # httptools, a header deadline
    }
    if settings.workers == 1:
        uvicorn.run(worker_app(settings), **options)  # type: ignore[arg-type]
    else:
        _share_settings(settings)
        uvicorn.run(
            "graph.runtime.server:worker_app",
            factory=True,
            workers=settings.workers,
            **options,  # type: ignore[arg-type]
        )
    return 0
