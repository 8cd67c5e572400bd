"""The ``ordergraph`` command: serve, project, relay, projections, migrate, rebuild,
export-schema, subscribe, token.

Imports here are the standard library and our settings only; each command imports what it
needs when it runs, so ``ordergraph --help`` answers at once. Exit codes: see graph/startup.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from graph import settings as parse
from graph.settings import InvalidSettings, Settings
from graph.startup import (
    DATABASE_NOT_READY,
    INTERRUPTED,
    OK,
    SUBSCRIPTION_FAILED,
    USAGE,
    StartupError,
    check_connection,
    check_database,
    connect_args,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# Mirrors readmodels.registry.PROJECTION_NAMES (a test checks), which --help must not import.
PROJECTION_NAMES = ("order_views", "customer_summaries", "daily_sales")
# Mirrors domain.access.ROLES (a test checks), for the same reason.
ROLES = ("customer", "staff", "payments")

log = logging.getLogger("ordergraph")


def _engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    from domain.db import create_engine

    return create_engine(
        settings.database_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        connect_args=connect_args(settings),
        **kwargs,
    )


async def _project(settings: Settings) -> None:
    """The projector alone, until SIGTERM or Ctrl-C: pair it with API replicas that run
    with RUN_PROJECTOR=false."""
    from graph.wiring import running_core

    engine = _engine(settings)
    try:
        await check_database(engine, settings, migrate=settings.is_sqlite)
    finally:
        await engine.dispose()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with running_core(settings, projector=True):
        log.info("projector running")
        await stop.wait()


async def _relay(settings: Settings, from_position: int | None) -> None:
    """The integration relay alone, until SIGTERM or Ctrl-C; ``--from`` publishes again from
    a position first (docs/integration.md)."""
    from graph.wiring import build_relay, running_core

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    engine = _engine(settings)
    try:
        await check_database(engine, settings, migrate=settings.is_sqlite)
    finally:
        await engine.dispose()
    async with running_core(settings, projector=False, relay=False) as core:
        relay = build_relay(core.engine, core.notifier, settings)
        if from_position is not None:
            await relay.rewind(from_position)
            print(f"relay: publishing again from position {from_position}", flush=True)
        await relay.start(wake_on_announced_appends=not settings.is_sqlite)
        print("relay running", flush=True)  # for scripts and supervisors: it is ready
        try:
            await stop.wait()
        finally:
            await relay.stop()
            status = await relay.status()
            print(
                f"relay stopped at position {status.position} of {status.head}:"
                f" published {status.published}, duplicates {status.duplicates}",
                flush=True,
            )


async def _projections(settings: Settings) -> None:
    """Each checkpoint (the projections, and the integration relay where it has run): where
    it is, how far behind the head in events and seconds, its state and last error."""
    from graph.health import projection_health

    engine = _engine(settings)
    try:
        await check_database(engine, settings, migrate=settings.is_sqlite)
        head, found = await projection_health(engine, settings.stall_seconds, within=30)
    finally:
        await engine.dispose()
    print(f"{'name':20} {'position':>10} {'lag':>8} {'lag s':>8}  {'state':10} error")
    for p in found:
        stalled = " (stalled)" if p.stalled else ""
        print(
            f"{p.name:20} {p.position:>10} {p.lag:>8} {p.lag_seconds:>8.1f}"
            f"  {p.state + stalled:10} {p.error or ''}".rstrip()
        )
    print(f"head {head}")


async def _migrate(settings: Settings, force: bool) -> None:
    from migrations import NotOurDatabase, refuse_foreign, upgrade_to_head

    engine = _engine(settings)
    try:
        await check_connection(engine, settings)
        try:
            if not force:
                await refuse_foreign(engine)
        except NotOurDatabase as error:
            message = f"{error} (--force migrates it anyway)"
            raise StartupError(message, DATABASE_NOT_READY) from None
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


class _ProgressBar:
    """One line on stderr, redrawn in place: events replayed, percentage, rate."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        share = done / total if total else 1.0
        bar = "#" * int(share * 30)
        sys.stderr.write(
            f"\r{self.name:20} [{bar:30}] {share:6.1%} {done:>9} events {done / elapsed:>8.0f}/s"
        )
        sys.stderr.flush()


async def _rebuild(settings: Settings, names: Sequence[str], batch_size: int) -> None:
    from readmodels.notifier import InProcessNotifier
    from readmodels.rebuild import rebuild
    from readmodels.registry import all_projections

    engine = _engine(settings)
    try:
        await check_database(engine, settings, migrate=settings.is_sqlite)
        chosen = [p for p in all_projections() if p.name in names]
        bar = _ProgressBar(", ".join(names))
        replayed = await rebuild(
            engine, chosen, InProcessNotifier(), batch_size=batch_size, progress=bar
        )
        elapsed = time.perf_counter() - bar.started
        sys.stderr.write("\n")
        print(
            f"rebuilt {', '.join(names)}: {replayed} events in {elapsed:.2f}s "
            f"({replayed / max(elapsed, 1e-9):.0f} events/s)"
        )
    finally:
        await engine.dispose()


async def _record_interrupted_rebuild(settings: Settings, names: Sequence[str]) -> str:
    from readmodels.rebuild import mark_interrupted

    engine = _engine(settings)
    try:
        reached = await mark_interrupted(engine, names)
    finally:
        await engine.dispose()
    at = ", ".join(f"{name} at {position}" for name, position in sorted(reached.items()))
    return (
        f"rebuild interrupted ({at}); the projections say 'rebuilding' until the projector "
        "(ordergraph serve or project) has caught them up; run rebuild again to start over"
    )


def _argument(parse_value: parse.Parser) -> parse.Parser:
    """A settings parser as an argparse type: its message, not "invalid value"."""

    def convert(text: str) -> Any:
        try:
            return parse_value(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None

    return convert


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ordergraph",
        description=__doc__.split("\n", 1)[0],
        epilog="Settings come from the environment (see the README). Exit codes: 0 done, "
        "1 internal error, 2 wrong argument or setting, 3 database unreachable, 4 database "
        "not ready (schema, foreign tables), 5 subscription failed, 130 interrupted.",
    )
    parser.add_argument(
        "--database-url", type=_argument(parse.database_url), help="default: $DATABASE_URL"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the GraphQL server under uvicorn")
    serve.add_argument("--host", type=_argument(parse.host), help="default: $HOST or 127.0.0.1")
    serve.add_argument(
        "--port", type=_argument(parse.integer(1, 65535)), help="default: $PORT or 8000"
    )
    serve.add_argument(
        "--workers",
        type=_argument(parse.integer(1, 64)),
        help="worker processes (PostgreSQL only); default: $WORKERS or 1",
    )
    migrate = sub.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument(
        "--force", action="store_true", help="migrate even a database holding foreign tables"
    )
    sub.add_parser("project", help="run only the projector (beside API replicas)")
    sub.add_parser("projections", help="where each projection (and the relay) is, and why")
    relay = sub.add_parser("relay", help="run only the integration relay (needs NATS_URL)")
    relay.add_argument(
        "--from",
        dest="from_position",
        type=_argument(parse.integer(1, 2**63 - 1)),
        metavar="POSITION",
        help="publish again from this position on (same message ids: docs/integration.md)",
    )
    watch = sub.add_parser("subscribe", help="print a subscription's events from a server")
    watch.add_argument("query", help="the GraphQL subscription document")
    watch.add_argument("--url", help="default: ws://$HOST:$PORT/graphql")
    watch.add_argument("--variables", default="{}", help="JSON object")
    watch.add_argument(
        "--token", default=os.environ.get("TOKEN"), help="bearer token (default: $TOKEN)"
    )
    sub.add_parser("export-schema", help="print the GraphQL SDL (what schema.graphql holds)")
    token = sub.add_parser("token", help="mint a development token signed with JWT_SECRET")
    token.add_argument("--sub", required=True, help="the token's subject")
    token.add_argument("--role", action="append", default=[], choices=ROLES, dest="roles")
    token.add_argument("--customer", help="the customer id (default for a customer: --sub)")
    token.add_argument(
        "--ttl", type=_argument(parse.integer(1, 366 * 86_400)), default=3600, help="seconds"
    )
    rebuild_parser = sub.add_parser("rebuild", help="replay projections from the first event")
    known = ", ".join(PROJECTION_NAMES)
    rebuild_parser.add_argument("names", nargs="*", metavar="NAME", help=known)
    rebuild_parser.add_argument("--all", action="store_true", help="every projection")
    rebuild_parser.add_argument(
        "--batch-size", type=_argument(parse.integer(1, 100_000)), default=5000
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides = {
        "database_url": args.database_url,
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
        "workers": getattr(args, "workers", None),
    }
    return dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "export-schema":
        from graph.schema import export_sdl

        sys.stdout.write(export_sdl())
        return OK
    try:
        settings = _settings(args)
    except InvalidSettings as error:
        for problem in error.problems:
            print(f"ordergraph: {problem}", file=sys.stderr)
        return USAGE
    try:
        return _run(parser, args, settings)
    except StartupError as error:
        print(f"ordergraph: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        return INTERRUPTED


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        from graph.server import serve

        return serve(settings)
    if args.command == "token":
        from graph.tokens import mint

        try:
            print(mint(settings, args.sub, args.roles, args.customer, ttl_seconds=args.ttl))
        except ValueError as error:
            parser.error(str(error))
        return OK
    if args.command == "subscribe":
        from graph.watch import subscribe

        url = args.url or f"ws://{settings.host}:{settings.port}/graphql"
        try:
            variables = json.loads(args.variables)
        except json.JSONDecodeError as error:
            parser.error(f"--variables is not JSON: {error}")
        with contextlib.suppress(KeyboardInterrupt):
            ok = asyncio.run(subscribe(url, args.query, variables, token=args.token))
            return OK if ok else SUBSCRIPTION_FAILED
        return INTERRUPTED
    from graph.logs import configure_logging

    configure_logging(settings)
    if args.command == "project":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_project(settings))
        return OK
    if args.command == "projections":
        asyncio.run(_projections(settings))
        return OK
    if args.command == "relay":
        if not settings.nats_url:
            parser.error("the relay needs NATS_URL (e.g. nats://127.0.0.1:4222)")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_relay(settings, args.from_position))
        return OK
    if args.command == "migrate":
        asyncio.run(_migrate(settings, args.force))
        print(f"migrated {_where(settings)}")
        return OK
    names = list(PROJECTION_NAMES) if args.all else args.names
    unknown = sorted(set(names) - set(PROJECTION_NAMES))
    if unknown or not names:
        parser.error(f"name projections ({', '.join(PROJECTION_NAMES)}) or pass --all")
    try:
        asyncio.run(_rebuild(settings, names, args.batch_size))
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        note = asyncio.run(_record_interrupted_rebuild(settings, names))
        print(f"ordergraph: {note}", file=sys.stderr)
        return INTERRUPTED
    return OK


def _where(settings: Settings) -> str:
    from graph.startup import where

    return where(settings.database_url)


if __name__ == "__main__":
    raise SystemExit(main())
