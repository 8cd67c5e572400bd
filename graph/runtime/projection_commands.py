"""``ordergraph rebuild`` and ``ordergraph projections [retry|skip|cleanup]``: what an operator
runs against projections, printed for a terminal. Imported only when one of them runs."""

from __future__ import annotations

import getpass
import socket
import sys
import time
from collections.abc import Collection, Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from graph.runtime.gc_tuning import tune_gc
from readmodels.builds import drop_retired
from readmodels.names import PROJECTION_NAMES
from readmodels.notifications.inprocess import InProcessNotifier
from readmodels.operations import retry, skip
from readmodels.queries import ProjectionStatusView, ReadModelQueries
from readmodels.rebuild import mark_interrupted, rebuild
from readmodels.registry import all_projections


class ProgressBar:
    """One line on stderr, redrawn in place: position of head, percentage, rate, ETA."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.perf_counter()
        self.first: int | None = None

    def __call__(self, position: int, head: int, ours: bool) -> None:
        if self.first is None:
            self.first = position
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = (position - self.first) / elapsed
        share = position / head if head else 1.0
        eta = f"ETA {max(head - position, 0) / rate:5.0f}s" if rate > 0 else "ETA    ?s"
        bar = "#" * int(min(share, 1.0) * 30)
        who = "" if ours else " (built by another process)"
        sys.stderr.write(
            f"\r{self.name:20} [{bar:30}] {share:6.1%} {position:>9}/{head} "
            f"{rate:>8.0f} events/s {eta}{who}"
        )
        sys.stderr.flush()


async def rebuild_command(engine: AsyncEngine, names: Sequence[str], batch_size: int) -> None:
    chosen = [p for p in all_projections() if p.name in names]
    tune_gc()  # a rebuild makes objects by the million: see graph/runtime/gc_tuning.py
    bar = ProgressBar(", ".join(names))
    done = await rebuild(engine, chosen, InProcessNotifier(), batch_size=batch_size, progress=bar)
    elapsed = time.perf_counter() - bar.started
    sys.stderr.write("\n")
    resumed = {n: p for n, p in done.resumed_from.items() if p}
    if resumed:
        at = ", ".join(f"{n} from {p}" for n, p in sorted(resumed.items()))
        print(f"resumed the builds under way ({at})")
    active = ", ".join(f"{n} version {v}" for n, v in done.versions.items())
    how = (
        f"{done.replayed} events in {elapsed:.2f}s ({done.replayed / max(elapsed, 1e-9):.0f}"
        " events/s)"
        if done.built_here
        else "built by another process"
    )
    print(
        f"rebuilt and switched to {active}: {how}; the versions they replace are retired "
        "(their tables go after RETIRED_GRACE_SECONDS, or now with "
        "`ordergraph projections cleanup`)"
    )


async def interrupted_note(engine: AsyncEngine, names: Sequence[str]) -> str:
    reached = await mark_interrupted(engine, names)
    at = ", ".join(f"{name} at {position}" for name, position in sorted(reached.items()))
    return (
        f"rebuild interrupted ({at}); the active versions are untouched and keep serving; "
        "the projector (ordergraph serve or project) resumes the build from there, and so "
        "does rebuild run again"
    )


def _when(value: object) -> str:
    return "-" if value is None else str(value)[:19]


def describe(statuses: Sequence[ProjectionStatusView]) -> str:
    lines = []
    for s in statuses:
        head = f"{s.name}: version {s.version} active, {s.state} at {s.position} of {s.head}"
        lines.append(head + f" (lag {s.lag})")
        if s.error is not None:
            lines.append(f"  error at position {s.error_position}: {s.error}")
        for v in s.versions:
            line = (
                f"  v{v.version} (code {v.code_version}) {v.status:8} {v.state:6} "
                f"position {v.position} lag {v.lag}"
            )
            if v.rate:
                line += f" {v.rate:.0f} events/s"
            if v.eta_seconds is not None:
                line += f" ETA {v.eta_seconds:.0f}s"
            if v.builder:
                line += f" built by {v.builder}"
            if v.error:
                line += f"; failed at {v.error_position}: {v.error}"
            if v.note:
                line += f"; {v.note}"
            stamps = [("created", v.created_at), ("activated", v.activated_at)]
            stamps += [("retired", v.retired_at), ("dropped", v.dropped_at)]
            line += "; " + ", ".join(f"{k} {_when(t)}" for k, t in stamps if t is not None)
            lines.append(line)
        for k in s.skipped:
            lines.append(
                f"  skipped position {k.position} ({k.event_type}) in v{k.version} by "
                f"{k.skipped_by} at {_when(k.skipped_at)}: {k.reason}"
            )
    return "\n".join(lines)


async def list_command(
    engine: AsyncEngine, stall_seconds: float = 30.0, inline: Collection[str] = ()
) -> None:
    """Each checkpoint (the projections, and the integration relay where it has run): where
    it is, how far behind the head in events and seconds, its lifecycle (as
    INLINE_PROJECTIONS here says), state and last error; then each projection's versions and
    skipped events."""
    from graph.runtime.health import projection_health

    head, found = await projection_health(engine, stall_seconds, within=30)
    print(
        f"{'name':20} {'position':>10} {'lag':>8} {'lag s':>8}  {'state':10} {'lifecycle':9} error"
    )
    for p in found:
        stalled = " (stalled)" if p.stalled else ""
        lifecycle = "inline" if p.name in inline else "async" if p.name in PROJECTION_NAMES else "-"
        print(
            f"{p.name:20} {p.position:>10} {p.lag:>8} {p.lag_seconds:>8.1f}"
            f"  {p.state + stalled:10} {lifecycle:9} {p.error or ''}".rstrip()
        )
    print(f"head {head}\n")
    statuses = await ReadModelQueries(engine).projection_statuses()
    print(describe([s for s in statuses if s.versions]))


async def retry_command(engine: AsyncEngine, name: str) -> None:
    retried = await retry(engine, all_projections(), InProcessNotifier(), name)
    print(f"retried {name} (versions {', '.join(map(str, retried))}):")
    print(describe(await ReadModelQueries(engine).projection_statuses([name])))


def operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()} (cli)"


async def skip_command(engine: AsyncEngine, name: str, position: int, reason: str) -> None:
    done = await skip(engine, all_projections(), name, position, reason, operator())
    print(
        f"skipped position {done.position} ({done.event_type}) for {name} versions "
        f"{', '.join(map(str, done.versions))}, on record as {done.skipped_by}"
    )


async def cleanup_command(engine: AsyncEngine, names: Sequence[str]) -> None:
    dropped = await drop_retired(engine, all_projections(), older_than=0, names=names or None)
    if not dropped:
        print("no retired versions with tables left")
    for name, version in dropped:
        print(f"dropped the tables of {name} version {version}")
