"""The ``ordergraph`` command: serve, migrate, rebuild, export-schema."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence

from domain.db import create_engine
from graph.settings import Settings
from migrations import upgrade_to_head
from readmodels.notifier import InProcessNotifier
from readmodels.rebuild import rebuild
from readmodels.registry import PROJECTION_NAMES, all_projections


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
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
    engine = create_engine(settings.database_url)
    try:
        await upgrade_to_head(engine)
        projections = {p.name: p for p in all_projections()}
        for name in names:
            bar = _ProgressBar(name)
            replayed = await rebuild(
                engine, projections[name], InProcessNotifier(), batch_size=batch_size, progress=bar
            )
            elapsed = time.perf_counter() - bar.started
            sys.stderr.write("\n")
            print(
                f"rebuilt {name}: {replayed} events in {elapsed:.2f}s "
                f"({replayed / max(elapsed, 1e-9):.0f} events/s)"
            )
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="ordergraph", description=__doc__)
    parser.add_argument(
        "--database-url", default=settings.database_url, help="default: $DATABASE_URL"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the database schema")
    rebuild_parser = sub.add_parser("rebuild", help="replay projections from the first event")
    rebuild_parser.add_argument("names", nargs="*", choices=[[], *PROJECTION_NAMES], metavar="NAME")
    rebuild_parser.add_argument("--all", action="store_true", help="every projection")
    rebuild_parser.add_argument("--batch-size", type=int, default=5000)
    args = parser.parse_args(argv)
    settings = Settings(database_url=args.database_url)
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
        print(f"migrated {settings.database_url}")
    elif args.command == "rebuild":
        names = list(PROJECTION_NAMES) if args.all else args.names
        if not names:
            parser.error(f"name a projection ({', '.join(PROJECTION_NAMES)}) or pass --all")
        asyncio.run(_rebuild(settings, names, args.batch_size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
