"""``python -m bench`` (``make bench``): ordergraph as its users feel it, beside baselines
measured in the same run on the same machine. See bench/README.md.

For each backend: start ``ordergraph serve`` (production settings) in a subprocess, warm it up,
drive it from this process with N keep-alive clients (placeOrder, a mixed workload,
read-your-writes under load, order(id) queries), read its peak memory; then the same against
the raw-driver baseline server; then, in a child process, ordergraph's bus beside the
eventsourcing library in-process; then a projection rebuild of 100,000 events; then the
integration relay against NATS JetStream ($NATS_URL; ``--relay-orders 0`` skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.databases import throwaway
from bench.load import (
    Client,
    Samples,
    Summary,
    catch_up,
    closed_loop,
    mixing,
    open_clients,
    placing,
    querying,
    read_your_writes,
)
from bench.servers import (
    BIN,
    Server,
    background,
    baseline_command,
    free_port,
    ordergraph_command,
    production_env,
    run_command,
    serve,
)
from bench.workloads import accepted, place_body

QUERY_ORDERS = 200  # orders the query workloads pick from


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per workload")
    parser.add_argument("--rebuild-events", type=int, default=100_000)
    parser.add_argument("--inprocess-orders", type=int, default=1500)
    parser.add_argument(
        "--replica-orders",
        type=int,
        default=300,
        help="orders placed one at a time through a standby of its own (PostgreSQL; 0: skip)",
    )
    parser.add_argument(
        "--relay-orders", type=int, default=20_000, help="backlog for the relay (0: skip it)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: short everything")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = min(args.duration, 2.0)
        args.rebuild_events = min(args.rebuild_events, 10_000)
        args.inprocess_orders = min(args.inprocess_orders, 200)
        args.relay_orders = min(args.relay_orders, 2000)
        args.replica_orders = min(args.replica_orders, 40)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown or args.clients < 2:
        parser.error(f"unknown backends {sorted(unknown)}" if unknown else "need 2+ clients")
    return args


def _log(message: str) -> None:
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


async def _phase(
    name: str, clients: list[Client], steps: list[Any], duration: float
) -> tuple[Summary, int]:
    samples = Samples()
    summary = await closed_loop(clients, steps, duration, samples)
    _log(f"  {name}: {summary.throughput:,.0f}/s p50 {summary.p50_ms:.1f} ms "
         f"p99 {summary.p99_ms:.1f} ms errors {summary.errors}")  # fmt: skip
    return summary, samples.position


async def _seed_orders(client: Client, path: str) -> tuple[list[str], int]:
    """Orders for the query workloads, placed through the server under test."""
    ids, position = [], 0
    for n in range(QUERY_ORDERS):
        result = accepted(await client.post(path, place_body(f"reader-{n % 20}")), "placeOrder")
        ids.append(result.order_id)
        position = max(position, result.position)
    return ids, position


async def _ordergraph(server: Server, args: argparse.Namespace) -> dict[str, Any]:
    n, d, url = args.clients, args.duration, server.base_url
    out: dict[str, Any] = {}
    async with open_clients(url, n) as clients:
        warm = [placing("/graphql", f"warm-{i}") for i in range(n)]
        _, head = await _phase("warm-up", clients, warm, max(1.0, d / 4))
        await catch_up(url, head)
        place = [placing("/graphql", f"customer-{i}") for i in range(n)]
        out["place"], head = await _phase("placeOrder", clients, place, d)
        out["catch_up_after_place_s"] = await catch_up(url, head)
        mixed = [mixing("/graphql", f"mixed-{i}", seed=i) for i in range(n)]
        out["mixed"], head = await _phase("mixed", clients, mixed, d)
        out["catch_up_after_mixed_s"] = await catch_up(url, head)
        out["ryw"], out["ryw_writers"] = await read_your_writes(url, clients, d, max(1, n // 4))
        _log(f"  read-your-writes: p50 {out['ryw'].p50_ms:.1f} ms p99 {out['ryw'].p99_ms:.1f} "
             f"ms ({out['ryw'].ops} probes, errors {out['ryw'].errors})")  # fmt: skip
        out["ryw_floor"], _ = await read_your_writes(url, clients, d, max(1, n // 4), reached=head)
        _log(f"  the same round trip for position {head}, long reached: p50 "
             f"{out['ryw_floor'].p50_ms:.1f} ms p99 {out['ryw_floor'].p99_ms:.1f} ms")  # fmt: skip
        # The same at half the measured placeOrder rate: 16 writers that leave the server
        # headroom, so the figure is the read path's latency rather than a saturated queue's.
        rate = out["place"].throughput / 2
        out["ryw_half_rate"] = rate
        out["ryw_half"], _ = await read_your_writes(
            url, clients, d, max(1, n // 4), interval=n / max(rate, 1.0)
        )
        _log(f"  read-your-writes at {rate:.0f} req/s: p50 {out['ryw_half'].p50_ms:.1f} ms "
             f"p99 {out['ryw_half'].p99_ms:.1f} ms")  # fmt: skip
        ids, head = await _seed_orders(clients[0], "/graphql")
        await catch_up(url, head)  # positions are global: this covers the RYW writers too
        queries = [querying("/graphql", ids, seed=i) for i in range(n)]
        out["query"], _ = await _phase("order(id)", clients, queries, d)
    out["order_ids"] = ids
    out["memory_kib"] = server.peak_memory_kib()
    return out


async def _split(url: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The production topology past one process: the API with RUN_PROJECTOR=false beside an
    ``ordergraph project`` process, on the same (already used) database."""
    _log("postgresql: ordergraph serve (RUN_PROJECTOR=false) + ordergraph project")
    n, d = args.clients, args.duration
    port = free_port()
    api_env = production_env(url, RUN_PROJECTOR="false")
    projector = [str(BIN / "ordergraph"), "project"]
    out: dict[str, Any] = {}
    async with (
        background("projector-postgresql", projector, production_env(url), tmp),
        serve("ordergraph-api-postgresql", ordergraph_command(port), port, api_env, tmp) as s,
        open_clients(s.base_url, n) as clients,
    ):
        warm = [placing("/graphql", f"split-warm-{i}") for i in range(n)]
        _, head = await _phase("warm-up", clients, warm, max(1.0, d / 4))
        await catch_up(s.base_url, head)
        place = [placing("/graphql", f"split-{i}") for i in range(n)]
        out["place"], head = await _phase("placeOrder (API + projector process)", clients, place, d)
        await catch_up(s.base_url, head)
        out["ryw"], out["ryw_writers"] = await read_your_writes(
            s.base_url, clients, d, max(1, n // 4)
        )
        _log(f"  read-your-writes: p50 {out['ryw'].p50_ms:.1f} ms p99 {out['ryw'].p99_ms:.1f} ms")
    return out


async def _baseline(server: Server, args: argparse.Namespace, ids: list[str]) -> dict[str, Any]:
    n, d = args.clients, args.duration
    out: dict[str, Any] = {}
    async with open_clients(server.base_url, n) as clients:
        warm = [placing("/place", f"warm-{i}") for i in range(n)]
        await _phase("baseline warm-up", clients, warm, max(1.0, d / 4))
        place = [placing("/place", f"customer-{i}") for i in range(n)]
        out["place"], _ = await _phase("baseline insert", clients, place, d)
        queries = [querying("/order", ids, seed=i) for i in range(n)]
        out["query"], _ = await _phase("baseline select", clients, queries, d)
    out["memory_kib"] = server.peak_memory_kib()
    return out


async def _backend(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"clients": args.clients}
    async with throwaway(backend, tmp, "main") as url:
        env = production_env(url)
        if backend == "postgresql":
            await run_command([str(BIN / "ordergraph"), "migrate"], env)
        _log(f"{backend}: ordergraph serve")
        port = free_port()
        async with serve(f"ordergraph-{backend}", ordergraph_command(port), port, env, tmp) as s:
            result["ordergraph"] = await _ordergraph(s, args)
        if backend == "postgresql":
            result["split"] = await _split(url, args, tmp)
        _log(f"{backend}: baseline server")
        port = free_port()
        async with serve(f"baseline-{backend}", baseline_command(port), port, env, tmp) as s:
            ids = result["ordergraph"].pop("order_ids")
            result["baseline"] = await _baseline(s, args, ids)
        _log(f"{backend}: in-process, ordergraph bus and eventsourcing library")
        command = [str(BIN / "python"), "-m", "bench.es_baseline", "--database-url", url]
        command += ["--orders", str(args.inprocess_orders), "--concurrency", str(args.clients)]
        result["inprocess"] = json.loads(await run_command(command, env))
        _log(f"  {result['inprocess']}")
    async with throwaway(backend, tmp, "rebuild") as url:
        _log(f"{backend}: rebuild {args.rebuild_events:,} events")
        command = [str(BIN / "python"), "-m", "bench.replay", "--database-url", url,
                   "--events", str(args.rebuild_events)]  # fmt: skip
        result["rebuild"] = json.loads(await run_command(command, production_env(url)))
        _log(f"  {result['rebuild']['rate']:,.0f} events/s")
    if args.relay_orders:
        async with throwaway(backend, tmp, "relay") as url:
            _log(f"{backend}: integration relay, {args.relay_orders:,} events, NATS JetStream")
            command = [str(BIN / "python"), "-m", "bench.relay_rate", "--database-url", url,
                       "--orders", str(args.relay_orders), "--seconds", str(args.duration),
                       "--json"]  # fmt: skip
            result["relay"] = json.loads(await run_command(command, production_env(url)))
            _log(f"  {result['relay']['rate']:,.0f} events/s")
    if backend == "postgresql" and args.replica_orders:
        _log(f"{backend}: read-your-writes through a streaming standby of its own")
        command = [str(BIN / "python"), "-m", "bench.replicas", "--orders",
                   str(args.replica_orders), "--json"]  # fmt: skip
        result["replicas"] = json.loads(await run_command(command, dict(os.environ)))
        standby, primary = result["replicas"]["standby"], result["replicas"]["primary"]
        _log(f"  atLeast p50 {standby['atLeast']['p50_ms']:.1f} ms via the standby,"
             f" {primary['atLeast']['p50_ms']:.1f} ms on the primary")  # fmt: skip
    plain: dict[str, Any] = _plain(result)
    return plain


def _plain(value: Any) -> Any:
    """Summaries (dataclasses) to JSON-ready dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _git() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], capture_output=True, text=True, check=False).stdout

    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--", ".").strip() else ""
    return git("rev-parse", "--short", "HEAD").strip() + dirty


async def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    results: dict[str, Any] = {
        "meta": {
            "command": shlex.join(
                ["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])]
            ),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "python": platform.python_version(),
            "git": _git(),
            "clients": args.clients,
            "duration": args.duration,
        },
        "backends": {},
    }
    with tempfile.TemporaryDirectory(prefix="ordergraph-bench-") as tmp:
        for backend in args.backends:
            results["backends"][backend] = await _backend(backend, args, Path(tmp))
    results["meta"]["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(report.write(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
