"""The ``ordergraph`` command: serve, project, relay, projections, migrate, rebuild,
export-schema, subscribe, token.

Imports here are the standard library and our settings only; each command imports what it
needs when it runs, so ``ordergraph --help`` answers at once. Exit codes: see
graph/runtime/startup.py.
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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from graph.runtime import settings as parse
from graph.runtime.gc_tuning import tune_gc
from graph.runtime.settings import InvalidSettings, Settings
from graph.runtime.startup import (
    DATABASE_NOT_READY,
    INTERRUPTED,
    OK,
    SUBSCRIPTION_FAILED,
    USAGE,
    StartupError,
    check_connection,
    check_database,
)
from readmodels.names import PROJECTION_NAMES

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

# Mirrors domain.access.ROLES (a test checks), for the same reason.
ROLES = ("customer", "staff", "payments")

log = logging.getLogger("ordergraph")


def _engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    from graph.runtime.composition import engine_for

    return engine_for(settings, **overrides)


async def _project(settings: Settings) -> None:
    """The projector alone, until SIGTERM or Ctrl-C: pair it with API replicas that run
    with RUN_PROJECTOR=false."""
    from graph.runtime.composition import running_core

    engine = _engine(settings)
    try:
        await check_database(engine, settings, migrate=settings.is_sqlite)
    finally:
        await engine.dispose()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with running_core(settings, projector=True):
        tune_gc()
        log.info("projector running")
        await stop.wait()


async def _relay(settings: Settings, from_position: int | None) -> None:
    """The integration relay alone, until SIGTERM or Ctrl-C; ``--from`` publishes again from
    a position first (docs/integration.md)."""
    from graph.runtime.composition import build_relay, running_core

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
        tune_gc()
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


async def _with_engine(settings: Settings, command: str, *args: Any) -> None:
    """Run one of graph/runtime/projection_commands.py's commands against a checked database."""
    from graph.runtime import projection_commands

    engine = _engine(settings)
    try:
        await check_database(engine, settings, migrate=settings.is_sqlite)
        await getattr(projection_commands, command)(engine, *args)
    finally:
        await engine.dispose()


async def _record_interrupted_rebuild(settings: Settings, names: Sequence[str]) -> str:
    from graph.runtime.projection_commands import interrupted_note

    engine = _engine(settings)
    try:
        return await interrupted_note(engine, names)
    finally:
        await engine.dispose()


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
    rebuild_parser = sub.add_parser(
        "rebuild",
        help="build a new version of projections beside the active ones, then switch to it",
    )
    known = ", ".join(PROJECTION_NAMES)
    rebuild_parser.add_argument("names", nargs="*", metavar="NAME", help=known)
    rebuild_parser.add_argument("--all", action="store_true", help="every projection")
    rebuild_parser.add_argument(
        "--batch-size", type=_argument(parse.integer(1, 100_000)), default=5000
    )
    projections = sub.add_parser(
        "projections",
        help="where each projection (and the relay) is, and why; its versions and skips",
    )
    actions = projections.add_subparsers(dest="action")
    retry = actions.add_parser("retry", help="retry a failed projection now")
    retry.add_argument("name", metavar="NAME", help=known)
    skip = actions.add_parser("skip", help="skip the one event a projection is stopped at")
    skip.add_argument("name", metavar="NAME", help=known)
    skip.add_argument("--position", required=True, type=_argument(parse.integer(1, 2**63 - 1)))
    skip.add_argument("--reason", required=True, help="kept on record with who and when")
    cleanup = actions.add_parser("cleanup", help="drop retired versions' tables now")
    cleanup.add_argument("names", nargs="*", metavar="NAME", help=known)
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
        from graph.runtime.server import serve

        return serve(settings)
    if args.command == "token":
        from graph.tokens import mint

        try:
            print(mint(settings, args.sub, args.roles, args.customer, ttl_seconds=args.ttl))
        except ValueError as error:
            parser.error(str(error))
        return OK
    if args.command == "subscribe":
        from graph.runtime.watch import subscribe

        url = args.url or f"ws://{settings.host}:{settings.port}/graphql"
        try:
            variables = json.loads(args.variables)
        except json.JSONDecodeError as error:
            parser.error(f"--variables is not JSON: {error}")
        with contextlib.suppress(KeyboardInterrupt):
            ok = asyncio.run(subscribe(url, args.query, variables, token=args.token))
            return OK if ok else SUBSCRIPTION_FAILED
        return INTERRUPTED
    from graph.runtime.logs import configure_logging

    configure_logging(settings)
    if args.command == "project":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_project(settings))
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
    if args.command == "projections":
        return _projections(parser, args, settings)
    names = list(PROJECTION_NAMES) if args.all else args.names
    unknown = sorted(set(names) - set(PROJECTION_NAMES))
    if unknown or not names:
        parser.error(f"name projections ({', '.join(PROJECTION_NAMES)}) or pass --all")
    try:
        asyncio.run(_with_engine(settings, "rebuild_command", names, args.batch_size))
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        note = asyncio.run(_record_interrupted_rebuild(settings, names))
        print(f"ordergraph: {note}", file=sys.stderr)
        return INTERRUPTED
    return OK


def _projections(
    parser: argparse.ArgumentParser, args: argparse.Namespace, settings: Settings
) -> int:
    from readmodels.operations import OperationRefused

    names = [args.name] if args.action in ("retry", "skip") else getattr(args, "names", [])
    unknown = sorted(set(names) - set(PROJECTION_NAMES))
    if unknown:
        parser.error(f"unknown projections {unknown}; known: {', '.join(PROJECTION_NAMES)}")
    command: tuple[Any, ...] = {
        None: ("list_command", settings.stall_seconds, settings.inline_names(PROJECTION_NAMES)),
        "retry": ("retry_command", args.name if args.action == "retry" else None),
        "skip": (
            "skip_command",
            getattr(args, "name", None),
            getattr(args, "position", None),
            getattr(args, "reason", None),
        ),
        "cleanup": ("cleanup_command", names),
    }[args.action]
    try:
        asyncio.run(_with_engine(settings, *command))
    except OperationRefused as refused:
        print(f"ordergraph: {refused}", file=sys.stderr)
        return USAGE
    return OK


def _where(settings: Settings) -> str:
    from graph.runtime.startup import where

    return where(settings.database_url)


if __name__ == "__main__":
    raise SystemExit(main())
