"""Turn one run's results into the table (stdout and ``bench/RESULTS.md``), the targets'
pass/fail, the JSON (``bench/results/latest.json``) and the chart (``latest.png``, copied to
``bench/chart.png``).

Every ratio is ordergraph over its baseline from the same run: above 1 is faster for
throughput, slower for latency and memory. Beside each row stand the figure and ratio of the
previous run, read from the committed ``bench/RESULTS.md`` (``previous``): ratios compare
across runs, absolute figures much less.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
# Issue 16: read-your-writes p99 flat out; placeOrder, mixed and order(id) against the raw
# driver on the same machine in the same run.
RYW_P99_TARGET_MS = 10.0
HALF_LOAD_RYW_P99_TARGET_MS = 50.0  # the earlier bound, kept for the half-load figure
PLACE_TARGET, MIXED_TARGET, QUERY_TARGET = 0.5, 0.4, 0.35
# Rebuild rate of all three projections together (issue 15): per backend.
REBUILD_TARGETS = {"sqlite": 50_000.0, "postgresql": 25_000.0}
RAW = "raw-driver Starlette"


@dataclass(frozen=True, slots=True)
class Row:
    backend: str
    figure: str
    unit: str
    value: float
    baseline: float | None
    baseline_name: str

    @property
    def ratio(self) -> float | None:
        return self.value / self.baseline if self.baseline else None


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    passed: bool
    detail: str


def rows(backend: str, r: dict[str, Any]) -> list[Row]:
    og, raw = r["ordergraph"], r["baseline"]
    out = []
    for key, label, base in (("place", "placeOrder", "place"), ("mixed", "mixed", "place")):
        out += [
            Row(backend, f"{label} throughput", "req/s", og[key]["throughput"],
                raw[base]["throughput"], f"{RAW} insert"),
            Row(backend, f"{label} p50", "ms", og[key]["p50_ms"], raw[base]["p50_ms"],
                f"{RAW} insert"),
            Row(backend, f"{label} p99", "ms", og[key]["p99_ms"], raw[base]["p99_ms"],
                f"{RAW} insert"),
        ]  # fmt: skip
    ryw, beside = og["ryw"], og["ryw_writers"]
    floor, reached = og.get("ryw_floor"), "caughtUp of a position long reached, same load"
    out += [
        Row(backend, "read-your-writes p50", "ms", ryw["p50_ms"], None, "-"),
        Row(backend, "read-your-writes p99", "ms", ryw["p99_ms"], RYW_P99_TARGET_MS,
            f"target ({RYW_P99_TARGET_MS:.0f} ms)"),
    ]  # fmt: skip
    if floor is not None:  # absent from runs before it was measured
        out += [
            Row(backend, "read-your-writes p50 over the floor", "ms", ryw["p50_ms"],
                floor["p50_ms"], reached),
            Row(backend, "read-your-writes p99 over the floor", "ms", ryw["p99_ms"],
                floor["p99_ms"], reached),
        ]  # fmt: skip
    out += [
        Row(backend, f"read-your-writes p50 at {og['ryw_half_rate']:.0f} req/s (half load)",
            "ms", og["ryw_half"]["p50_ms"], None, "-"),
        Row(backend, f"read-your-writes p99 at {og['ryw_half_rate']:.0f} req/s (half load)",
            "ms", og["ryw_half"]["p99_ms"], HALF_LOAD_RYW_P99_TARGET_MS,
            f"target ({HALF_LOAD_RYW_P99_TARGET_MS:.0f} ms)"),
        Row(backend, "placeOrder beside RYW", "req/s", beside["throughput"],
            raw["place"]["throughput"], f"{RAW} insert"),
        Row(backend, "order(id) throughput", "req/s", og["query"]["throughput"],
            raw["query"]["throughput"], f"{RAW} select"),
        Row(backend, "order(id) p50", "ms", og["query"]["p50_ms"], raw["query"]["p50_ms"],
            f"{RAW} select"),
        Row(backend, "order(id) p99", "ms", og["query"]["p99_ms"], raw["query"]["p99_ms"],
            f"{RAW} select"),
    ]  # fmt: skip
    if (split := r.get("split")) is not None:
        place, label = split["place"], "API + projector process"
        out += [
            Row(backend, f"placeOrder throughput ({label})", "req/s", place["throughput"],
                raw["place"]["throughput"], f"{RAW} insert"),
            Row(backend, f"placeOrder p99 ({label})", "ms", place["p99_ms"],
                raw["place"]["p99_ms"], f"{RAW} insert"),
            Row(backend, f"read-your-writes p50 ({label})", "ms", split["ryw"]["p50_ms"],
                None, "-"),
            Row(backend, f"read-your-writes p99 ({label})", "ms", split["ryw"]["p99_ms"],
                RYW_P99_TARGET_MS, f"target ({RYW_P99_TARGET_MS:.0f} ms)"),
        ]  # fmt: skip
    inproc = r["inprocess"]
    for mode in ("sequential", "concurrent"):
        label = "1 at a time" if mode == "sequential" else f"{r['clients']} concurrent"
        out.append(
            Row(backend, f"in-process place, {label}", "cmd/s", inproc["ordergraph"][mode],
                inproc["eventsourcing"][mode], "eventsourcing lib")
        )  # fmt: skip
    out += [
        Row(backend, f"rebuild {r['rebuild']['events']:,} events", "events/s",
            r["rebuild"]["rate"], REBUILD_TARGETS[backend],
            f"target ({REBUILD_TARGETS[backend]:,.0f}/s)"),
        Row(backend, "server peak memory (VmHWM)", "MiB", og["memory_kib"] / 1024,
            raw["memory_kib"] / 1024, f"{RAW} server"),
    ]  # fmt: skip
    if (relay := r.get("relay")) is not None:
        under = f"under {relay['commands_per_s']:.0f} cmd/s"
        out += [
            Row(backend, f"relay on a backlog of {relay['events']:,} events", "events/s",
                relay["rate"], relay["baseline"], "same NATS client, tight loop"),
            Row(backend, f"relay commit-to-PubAck p50 ({under})", "ms", relay["p50_ms"],
                None, "-"),
            Row(backend, f"relay commit-to-PubAck p99 ({under})", "ms", relay["p99_ms"],
                None, "-"),
            Row(backend, f"relay max lag ({under})", "events", relay["max_lag"], None, "-"),
        ]  # fmt: skip
    if (replicas := r.get("replicas")) is not None:
        primary, standby = replicas["primary"], replicas["standby"]
        same = "primary only, same run"
        out += [
            Row(backend, "via standby: mutation -> visible atLeast read p50", "ms",
                standby["atLeast"]["p50_ms"], primary["atLeast"]["p50_ms"], same),
            Row(backend, "via standby: mutation -> visible atLeast read p99", "ms",
                standby["atLeast"]["p99_ms"], primary["atLeast"]["p99_ms"], same),
            Row(backend, "via standby: mutation -> caughtUp p50", "ms",
                standby["caughtUp"]["p50_ms"], primary["caughtUp"]["p50_ms"], same),
            Row(backend, "placeOrder p50, remote_apply standby", "ms",
                replicas["remote_apply"]["p50_ms"], standby["placeOrder"]["p50_ms"],
                "async standby, same run"),
            Row(backend, "server CPU, 200 idle caughtUp waiters via standby", "%",
                standby["idle_cpu_200_waiters"] * 100, standby["idle_cpu"] * 100,
                "no waiters"),
        ]  # fmt: skip
    return out


def targets(results: dict[str, Any]) -> list[Target]:
    out = []
    for backend, r in results["backends"].items():
        og, raw, inproc = r["ordergraph"], r["baseline"], r["inprocess"]
        for key, label, base, target in (
            ("place", "placeOrder", "place", PLACE_TARGET),
            ("mixed", "mixed", "place", MIXED_TARGET),
            ("query", "order(id)", "query", QUERY_TARGET),
        ):
            ratio = og[key]["throughput"] / max(raw[base]["throughput"], 1e-9)
            driver = "raw driver insert" if base == "place" else "raw driver select"
            out.append(
                Target(
                    f"{backend}: {label} >= {target}x {driver}", ratio >= target, f"{ratio:.2f}x"
                )
            )
        mine, theirs = inproc["ordergraph"]["concurrent"], inproc["eventsourcing"]["concurrent"]
        out.append(
            Target(
                f"{backend}: placeOrder ahead of eventsourcing (in-process, "
                f"{r['clients']} concurrent)",
                mine > theirs,
                f"{mine:.0f} vs {theirs:.0f} cmd/s",
            )
        )
        p99 = og["ryw"]["p99_ms"]
        out.append(
            Target(
                f"{backend}: read-your-writes p99 <= {RYW_P99_TARGET_MS:.0f} ms at "
                f"{r['clients']} writers, flat out",
                p99 <= RYW_P99_TARGET_MS and og["ryw"]["ops"] > 0,
                f"{p99:.1f} ms",
            )
        )
        half = og["ryw_half"]["p99_ms"]
        out.append(
            Target(
                f"{backend}: read-your-writes p99 < {HALF_LOAD_RYW_P99_TARGET_MS:.0f} ms at "
                f"{r['clients']} writers, half load ({og['ryw_half_rate']:.0f} req/s)",
                half < HALF_LOAD_RYW_P99_TARGET_MS and og["ryw_half"]["ops"] > 0,
                f"{half:.1f} ms",
            )
        )
        if (replicas := r.get("replicas")) is not None:
            extra = (
                replicas["standby"]["atLeast"]["p50_ms"] - replicas["primary"]["atLeast"]["p50_ms"]
            )
            out.append(
                Target(
                    f"{backend}: read-your-writes via an async standby within 2 ms p50 of the"
                    " primary alone",
                    extra <= 2.0,
                    f"+{extra:.2f} ms",
                )
            )
        if (relay := r.get("relay")) is not None:
            ratio = relay["rate"] / max(relay["baseline"], 1e-9)
            out.append(
                Target(
                    f"{backend}: relay >= 0.5x the same client's tight loop (backlog)",
                    ratio >= 0.5,
                    f"{ratio:.2f}x",
                )
            )
        rate, target = r["rebuild"]["rate"], REBUILD_TARGETS[backend]
        out.append(
            Target(f"{backend}: rebuild >= {target:,.0f} events/s", rate >= target, f"{rate:.0f}/s")
        )
    return out


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}"


def table(results: dict[str, Any], previous: dict[tuple[str, str], tuple[str, str]]) -> str:
    """``previous``: (backend, figure) -> (figure, ratio) as the previous table printed them."""
    lines = [
        "| backend | figure | unit | ordergraph | baseline | baseline is | ratio "
        "| previous | previous ratio |",
        "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: |",
    ]
    for backend, r in results["backends"].items():
        for row in rows(backend, r):
            ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
            before, before_ratio = previous.get((row.backend, _figure_key(row.figure)), ("", ""))
            lines.append(
                f"| {row.backend} | {row.figure} | {row.unit} | {_number(row.value)} | "
                f"{_number(row.baseline)} | {row.baseline_name} | {ratio} | {before} | "
                f"{before_ratio} |"
            )
    lines += ["", "| target | result | measured |", "| --- | --- | --- |"]
    for target in targets(results):
        verdict = "PASS" if target.passed else "FAIL"
        lines.append(f"| {target.name} | {verdict} | {target.detail} |")
    errors = [
        f"- {backend} {side} {name}: {s['errors']} errors, first: `{s['first_error']}`"
        for backend, r in results["backends"].items()
        for side in ("ordergraph", "baseline")
        for name, s in r[side].items()
        if isinstance(s, dict) and s.get("errors")
    ]
    if errors:
        lines += ["", "Errors during the run:", *errors]
    return "\n".join(lines)


def _figure_key(figure: str) -> str:
    """A figure's name without the numbers a run puts in it ("at 331 req/s (half load)")."""
    return re.sub(r"\b\d[\d,.]*\b", "#", figure)  # not p50, p99


def previous_table(text: str) -> tuple[str, dict[tuple[str, str], tuple[str, str]]]:
    """The run a RESULTS.md describes (its first line after the title) and its rows:
    (backend, figure) -> (ordergraph figure, ratio)."""
    described = next((line for line in text.splitlines() if line.startswith("`")), "")
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 7 and cells[0] in ("sqlite", "postgresql"):
            found[cells[0], _figure_key(cells[1])] = (cells[3], cells[6])
    return described, found


def committed_results() -> str:
    """bench/RESULTS.md as last committed (the working copy if git cannot say)."""
    shown = subprocess.run(
        ["git", "show", "HEAD:./RESULTS.md"],
        cwd=BENCH_DIR,
        capture_output=True,
        text=True,
        check=False,
    )
    if shown.returncode == 0:
        return shown.stdout
    path = BENCH_DIR / "RESULTS.md"
    return path.read_text() if path.exists() else ""


def markdown(results: dict[str, Any], text: str, previous_run: str = "") -> str:
    meta = results["meta"]
    before = (
        [f"The previous columns are from the committed table: {previous_run}", ""]
        if previous_run
        else []
    )
    return "\n".join(
        [
            "# Benchmark results",
            "",
            f"`{meta['command']}` on {meta['started_at']}: {meta['cpus']} CPUs, load average "
            f"{meta['load_before']} before, Python {meta['python']}, ordergraph at "
            f"`{meta['git']}`. {meta['clients']} clients, {meta['duration']} s per workload.",
            "",
            *before,
            "Ratios are ordergraph over the baseline measured in the same run on the same "
            "machine (above 1: faster for throughput, slower for latency and memory). "
            "Methods: [bench/README.md](README.md).",
            "",
            text,
            "",
        ]
    )


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt

    backends = list(results["backends"])
    fig, axes = plt.subplots(len(backends), 2, figsize=(13, 4.2 * len(backends)), squeeze=False)
    for (left, right), backend in zip(axes, backends, strict=True):
        r = results["backends"][backend]
        og, raw = r["ordergraph"], r["baseline"]
        names = ["placeOrder", "mixed", "order(id)", "in-proc 1", "in-proc N"]
        ours = [og["place"]["throughput"], og["mixed"]["throughput"], og["query"]["throughput"],
                r["inprocess"]["ordergraph"]["sequential"],
                r["inprocess"]["ordergraph"]["concurrent"]]  # fmt: skip
        theirs = [raw["place"]["throughput"], raw["place"]["throughput"],
                  raw["query"]["throughput"], r["inprocess"]["eventsourcing"]["sequential"],
                  r["inprocess"]["eventsourcing"]["concurrent"]]  # fmt: skip
        _bars(left, names, ours, theirs, "ordergraph", "baseline (raw driver / eventsourcing)")
        left.set_title(f"{backend}: throughput (ops/s)")
        names = ["placeOrder", "mixed", "order(id)", "read-your-writes"]
        sides = [og["place"], og["mixed"], og["query"], og["ryw"]]
        bases = [raw["place"], raw["place"], raw["query"], None]
        for q, shade in (("p99_ms", 0.45), ("p50_ms", 1.0)):
            _bars(right, names, [s[q] for s in sides], [b[q] if b else 0.0 for b in bases],
                  f"ordergraph {q[:3]}", f"raw driver {q[:3]}", alpha=shade)  # fmt: skip
        right.axhline(RYW_P99_TARGET_MS, color="red", linestyle=":", linewidth=1)
        right.set_title(
            f"{backend}: latency (ms), p50 solid, p99 faded; red: {RYW_P99_TARGET_MS:.0f} ms"
        )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _bars(
    axis: Any,
    names: list[str],
    ours: list[float],
    theirs: list[float],
    our_label: str,
    their_label: str,
    alpha: float = 1.0,
) -> None:
    xs = range(len(names))
    axis.bar([x - 0.2 for x in xs], ours, 0.4, label=our_label, color="tab:blue", alpha=alpha)
    axis.bar([x + 0.2 for x in xs], theirs, 0.4, label=their_label, color="tab:gray", alpha=alpha)
    axis.set_xticks(list(xs), names)
    axis.legend(fontsize=7)


def write(results: dict[str, Any]) -> str:
    """Print-ready table; writes JSON, RESULTS.md and the chart as a side effect."""
    previous_run, previous = previous_table(committed_results())
    text = table(results, previous)
    results["targets"] = [
        {"name": t.name, "passed": t.passed, "measured": t.detail} for t in targets(results)
    ]
    results["previous"] = {"run": previous_run}
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (BENCH_DIR / "RESULTS.md").write_text(markdown(results, text, previous_run))
    chart(results, RESULTS_DIR / "latest.png")
    shutil.copyfile(RESULTS_DIR / "latest.png", BENCH_DIR / "chart.png")
    return text
