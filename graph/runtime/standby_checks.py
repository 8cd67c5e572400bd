"""Start-up checks of the settings read replicas rely on: one warning line per problem.

Not fatal: a standby without them still answers correctly, but its queries get cancelled by
replay conflicts (and retried elsewhere) more often, and replay stalls meanwhile.
- ``hot_standby_feedback = on`` on each standby: otherwise VACUUM on the primary removes row
  versions a standby query still reads, and replaying that cancels the query.
- ``vacuum_truncate = false`` on the projection tables (migration r18_vacuum_truncate): a
  VACUUM that truncates empty pages at a table's end takes an exclusive lock, and replaying
  it cancels standby queries on that table even with feedback on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

import readmodels.tables  # noqa: F401 - registers the projection tables on the metadata
from domain.eventstore.engines import reader
from domain.eventstore.tables import metadata

log = logging.getLogger("ordergraph.reads")


async def warn_about_standby_settings(
    primary: AsyncEngine, standbys: Sequence[tuple[str, AsyncEngine]]
) -> list[str]:
    """Log (and return) one line per setting that is not as docs/operations.md says."""
    problems: list[str] = []
    for name, engine in standbys:
        try:
            async with reader(engine).connect() as conn:
                standby = await conn.scalar(sa.text("SELECT pg_is_in_recovery()"))
                feedback = await conn.scalar(sa.text("SHOW hot_standby_feedback"))
        except Exception as error:
            problems.append(f"read target {name} cannot be checked now ({type(error).__name__})")
            continue
        if not standby:
            problems.append(f"read target {name} is not a standby (pg_is_in_recovery() = false)")
        if feedback != "on":
            problems.append(
                f"read target {name} has hot_standby_feedback = {feedback}: set it on, or "
                "VACUUM on the primary will cancel its queries"
            )
    tables = sorted(t.name for t in metadata.sorted_tables)
    query = sa.text(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname = ANY(:names)"
        " AND NOT COALESCE('vacuum_truncate=false' = ANY(reloptions), false)"
    ).bindparams(names=tables)
    async with reader(primary).connect() as conn:
        missing = sorted(await conn.scalars(query))
    problems += [
        f"projection table {table} lacks vacuum_truncate = false: a truncating VACUUM "
        "cancels standby queries on it (ordergraph migrate sets it)"
        for table in missing
    ]
    for problem in problems:
        log.warning("%s", problem)
    return problems
