"""The ``ordergraph`` command."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

from domain.db import create_engine
from graph.settings import Settings
from migrations import upgrade_to_head


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings.database_url)
    try:
        await upgrade_to_head(engine)
    finally:
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    settings = Settings.from_env()
    parser = argparse.ArgumentParser(prog="ordergraph", description=__doc__)
    parser.add_argument("--database-url", default=settings.database_url)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the database schema")
    args = parser.parse_args(argv)
    settings = Settings(database_url=args.database_url)
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
        print(f"migrated {settings.database_url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
