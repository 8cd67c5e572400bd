"""The benchmark's load generator still works: a second or so of each workload against
in-test servers on SQLite (ordergraph, and the raw-driver baseline), with no errors."""

from __future__ import annotations

from pathlib import Path

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
