"""The benchmark's load generator still works: a second or so of each workload against
in-test servers on SQLite (ordergraph, and the raw-driver baseline), with no errors."""

from __future__ import annotations

from pathlib import Path

from bench import request_cost
from bench.baseline_server import create_app as create_baseline_app
from bench.load import (
    Samples,
    catch_up,
    closed_loop,
    mixing,
    open_clients,
    placing,
    querying,
    read_your_writes,
)
from bench.workloads import accepted, place_body
from graph.runtime.app import create_app
from graph.runtime.settings import Settings
from tests.support.serving import serve_app

CLIENTS = 4
SECONDS = 0.3


async def test_load_generator_drives_ordergraph_and_the_baseline(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'bench.db'}"
    app = create_app(Settings(database_url=database_url))
    async with serve_app(app) as url, open_clients(url, CLIENTS) as clients:
        samples = Samples()
        steps = [placing("/graphql", f"c-{i}") for i in range(CLIENTS)]
        placed = await closed_loop(clients, steps, SECONDS, samples)
        assert placed.ops > 0
        assert placed.errors == 0, placed.first_error
        assert await catch_up(url, samples.position, within=10) >= 0

        steps = [mixing("/graphql", f"m-{i}", seed=i) for i in range(CLIENTS)]
        mixed = await closed_loop(clients, steps, SECONDS, Samples())
        assert mixed.errors == 0, mixed.first_error

        ryw, writers = await read_your_writes(url, clients, SECONDS, probes=1)
        assert ryw.ops > 0
        assert ryw.errors == writers.errors == 0, ryw.first_error or writers.first_error

        ids = [
            accepted(await clients[0].post("/graphql", place_body("r")), "placeOrder")
            for _ in range(3)
        ]
        await catch_up(url, max(a.position for a in ids), within=10)
        order_ids = [a.order_id for a in ids]
        steps = [querying("/graphql", order_ids, seed=i) for i in range(CLIENTS)]
        queried = await closed_loop(clients, steps, SECONDS, Samples())
        assert queried.ops > 0
        assert queried.errors == 0, queried.first_error

    async with serve_app(create_baseline_app(database_url)) as url, open_clients(url, 2) as clients:
        inserted = await closed_loop(
            clients, [placing("/place", f"c-{i}") for i in range(2)], SECONDS, Samples()
        )
        assert inserted.ops > 0
        assert inserted.errors == 0, inserted.first_error
        steps = [querying("/order", order_ids, seed=i) for i in range(2)]
        read = await closed_loop(clients, steps, SECONDS, Samples())
        assert read.ops > 0
        assert read.errors == 0, read.first_error


def _backend_results(scale: float) -> dict[str, object]:
    def summary(throughput: float, p50: float, p99: float) -> dict[str, float]:
        return {"throughput": throughput, "p50_ms": p50, "p99_ms": p99, "ops": 100, "errors": 0}

    return {
        "clients": 16,
        "ordergraph": {
            "place": summary(1000 * scale, 10, 20),
            "mixed": summary(800 * scale, 12, 25),
            "ryw": summary(0, 8, 9),
            "ryw_writers": summary(700 * scale, 0, 0),
            "ryw_half_rate": 500 * scale,
            "ryw_half": summary(0, 5, 7),
            "query": summary(1500 * scale, 5, 9),
            "memory_kib": 100 * 1024,
        },
        "baseline": {
            "place": summary(2000, 4, 8),
            "query": summary(4000, 1, 2),
            "memory_kib": 40 * 1024,
        },
        "inprocess": {
            "ordergraph": {"sequential": 700, "concurrent": 4000},
            "eventsourcing": {"sequential": 900, "concurrent": 3000},
        },
        "rebuild": {"events": 100_000, "rate": 60_000},
    }


def test_the_table_shows_the_previous_run_beside_each_row_and_the_issue_16_targets() -> None:
    from bench import report

    earlier = {"backends": {"sqlite": _backend_results(0.5)}}
    previous_text = report.markdown(
        {
            "meta": {
                "command": "python -m bench",
                "started_at": "then",
                "cpus": 2,
                "load_before": "0.1",
                "python": "3.11",
                "git": "abc1234",
                "clients": 16,
                "duration": 10,
            }
        },
        report.table(earlier, {}),
    )
    run, previous = report.previous_table(previous_text)
    assert "abc1234" in run

    text = report.table({"backends": {"sqlite": _backend_results(1.0)}}, previous)
    rows = {line.split(" | ")[1]: line.split(" | ") for line in text.splitlines() if "|" in line}
    # figure, ratio, then the previous run's figure and ratio; the half-load row matches
    # although its label names another rate
    assert rows["placeOrder throughput"][3] == "1,000"
    assert rows["placeOrder throughput"][6:8] == ["0.50x", "500"]
    assert rows["placeOrder p99"][7] == "20.00"
    assert rows["read-your-writes p99 at 500 req/s (half load)"][7] == "7.00"
    verdicts = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in
                text.splitlines() if line.startswith("| sqlite:")}  # fmt: skip
    assert verdicts["sqlite: placeOrder >= 0.5x raw driver insert"] == "PASS"
    assert verdicts["sqlite: mixed >= 0.4x raw driver insert"] == "PASS"
    assert verdicts["sqlite: order(id) >= 0.35x raw driver select"] == "PASS"
    assert verdicts["sqlite: read-your-writes p99 <= 10 ms at 16 writers, flat out"] == "PASS"
    slower = _backend_results(1.0)
    slower["ordergraph"]["query"]["throughput"] = 1000  # type: ignore[index]
    slower["ordergraph"]["ryw"]["p99_ms"] = 10.5  # type: ignore[index]
    failed = {t.name: t.passed for t in report.targets({"backends": {"sqlite": slower}})}
    assert not failed["sqlite: order(id) >= 0.35x raw driver select"]
    assert not failed["sqlite: read-your-writes p99 <= 10 ms at 16 writers, flat out"]


async def test_request_cost_times_each_workload_through_the_app(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'cost.db'}")
    for workload in ("order", "place"):
        result = await request_cost.main(settings, workload, requests=32, rounds=1, tune=False)
        assert float(str(result["cpu_us"])) > 0
