"""Which stages run on which presets, in what order; the figures go to the report.

`make bench` runs everything: the scaling curve (ingest, full refresh,
incremental run and BI queries) at each preset, the ingestion peers and the
loader's memory on the largest preset, the landing→mart latency (alone and with
a noisy neighbour), the next day on 1 and on 6 months of history, and the
50-session BI load at `growth`.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import bi_load, bi_queries, history, ingest, latency, refresh
from benchmarks.datasets import Dataset, dataset
from benchmarks.machine import machine_info, versions
from benchmarks.report import PRESET_ORDER, write
from benchmarks.server import BenchServer, bench_server

STAGES = (
    "ingest",
    "attribution",
    "bi-queries",
    "latency",
    "latency-noisy",
    "history",
    "bi-load",
)
# The enterprise organization's file landing during `latency-noisy`.
NEIGHBOUR_TOUCHPOINTS = 200_000


@dataclass
class BenchOptions:
    presets: list[str] = field(default_factory=lambda: list(PRESET_ORDER))
    months: int = 1
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    seed: int = 42
    work: Path = Path("data/bench")
    out: Path = Path("docs")
    ingest_preset: str | None = None  # default: the largest preset
    latency_preset: str | None = None  # default: growth, else the largest
    load_preset: str | None = None  # default: growth, else the largest
    history_preset: str | None = None  # default: growth, else the largest
    sessions: int = 50
    latency_waves: int = 8
    bi_samples: int = 200
    dbt_tests: bool = True
    orgs: int | None = None  # shrink presets (smoke test)
    days: int | None = None

    def __post_init__(self) -> None:
        self.presets = [p for p in PRESET_ORDER if p in self.presets]
        middle = "growth" if "growth" in self.presets else self.presets[-1]
        self.ingest_preset = self.ingest_preset or self.presets[-1]
        self.latency_preset = self.latency_preset or middle
        self.load_preset = self.load_preset or middle
        self.history_preset = self.history_preset or middle


class Bench:
    def __init__(self, options: BenchOptions, server: BenchServer) -> None:
        self.o = options
        self.server = server
        self.figures: dict = {"attribution": {}, "bi_queries": {}}
        self.stage_seconds: dict[str, float] = {}

    def _dataset(self, preset: str) -> Dataset:
        return dataset(self.o.work, preset, self.o.months, self.o.seed, self.o.orgs, self.o.days)

    def _timed(self, name: str, clock: float) -> None:
        self.stage_seconds[name] = round(
            self.stage_seconds.get(name, 0.0) + time.perf_counter() - clock, 1
        )

    def _wants(self, stage: str) -> bool:
        return stage in self.o.stages

    def run(self) -> dict:
        o = self.o
        if self._wants("ingest"):
            print(f"[ingest] {o.ingest_preset}", flush=True)
            clock = time.perf_counter()
            self.figures["ingestion"] = ingest.run(self.server, self._dataset(o.ingest_preset))
            self._timed("ingest", clock)
        for preset in o.presets:
            self._preset(preset)
        if self._wants("latency-noisy"):
            self._latency_noisy(o.latency_preset)
        if self._wants("history"):
            self._history(o.history_preset)
        if self._wants("bi-load"):
            self._bi_load(o.load_preset)
        return self.figures

    def _preset(self, preset: str) -> None:
        o = self.o
        latency_here = self._wants("latency") and preset == o.latency_preset
        if not (self._wants("attribution") or self._wants("bi-queries") or latency_here):
            return
        ds = self._dataset(preset)
        name = f"bench_{preset}"
        url = self.server.fresh_database(name)
        clock = time.perf_counter()
        if self._wants("attribution"):
            print(f"[attribution] {preset}", flush=True)
            self.figures["attribution"][preset] = refresh.run(url, ds, with_tests=o.dbt_tests)
            self._timed("attribution", clock)
        else:
            print(f"[prepare] {preset}", flush=True)
            refresh.prepare(url, ds)
            self._timed("prepare", clock)
        if self._wants("bi-queries"):
            print(f"[bi-queries] {preset}", flush=True)
            clock = time.perf_counter()
            self.server.enable_reader(url)
            result = bi_queries.run(self.server.reader_url(url), samples=o.bi_samples)
            self.figures["bi_queries"][preset] = {**result, "preset": preset}
            self._timed("bi-queries", clock)
        if latency_here:
            print(f"[latency] {preset}", flush=True)
            clock = time.perf_counter()
            result = latency.run(self.server, url, o.work, waves=o.latency_waves)
            self.figures["latency"] = {**result, "preset": preset}
            self._timed("latency", clock)
        self.server.drop_database(name)

    def _latency_noisy(self, preset: str) -> None:
        """A database of its own: the latency stage's probe deals keep their ids from run to run."""
        ds = self._dataset(preset)
        name = "bench_latency_noisy"
        url = self.server.fresh_database(name)
        print(f"[latency-noisy] {preset}: preparing", flush=True)
        clock = time.perf_counter()
        refresh.prepare(url, ds)
        print(
            f"[latency-noisy] {preset}: a {NEIGHBOUR_TOUCHPOINTS:,}-touchpoint file lands",
            flush=True,
        )
        result = latency.run(
            self.server,
            url,
            self.o.work,
            waves=self.o.latency_waves,
            neighbour_touchpoints=NEIGHBOUR_TOUCHPOINTS,
        )
        self.figures["latency_noisy"] = {**result, "preset": preset}
        self._timed("latency-noisy", clock)
        self.server.drop_database(name)

    def _history(self, preset: str) -> None:
        print(f"[history] {preset}: the next day on 1 month and on 6 months", flush=True)
        clock = time.perf_counter()
        result = history.run(
            self.server, self.o.work, preset, self.o.seed, self.o.orgs, self.o.days
        )
        self.figures["history"] = result
        self._timed("history", clock)
        print("\n".join(history.table_lines(result)), flush=True)

    def _bi_load(self, preset: str) -> None:
        ds = self._dataset(preset)
        name = "bench_bi_load"
        url = self.server.fresh_database(name)
        print(f"[bi-load] {preset}: preparing", flush=True)
        clock = time.perf_counter()
        refresh.prepare(url, ds)
        self.server.enable_reader(url)
        print(f"[bi-load] {self.o.sessions} sessions during daily_refresh", flush=True)
        result = bi_load.run(self.server, url, ds.next_day, self.o.work, sessions=self.o.sessions)
        self.figures["bi_load"] = {**result, "preset": preset}
        self._timed("bi-load", clock)
        self.server.drop_database(name)


def run_bench(options: BenchOptions, server: BenchServer | None = None) -> dict:
    """Run the selected stages and write the report; returns the merged figures."""
    options.work.mkdir(parents=True, exist_ok=True)
    started = datetime.now(UTC)
    machine = machine_info()
    if server is None:
        with bench_server(options.work.resolve()) as own:
            return _run(options, own, started, machine)
    return _run(options, server, started, machine)


def _command() -> str:
    """How this run was started: `python -m benchmarks …` or `attribution bench …`."""
    prog = os.environ.get("ATTRIBUTION_BENCH_PROG", "python -m benchmarks")
    return f"{prog} " + shlex.join(sys.argv[1:])


def _run(options: BenchOptions, server: BenchServer, started: datetime, machine: dict) -> dict:
    bench = Bench(options, server)
    figures = bench.run()
    figures |= {
        "generated_at": started.isoformat(timespec="seconds"),
        "command": _command(),
        "machine": machine,
        "versions": versions(server.maintenance_url),
        "stage_seconds": bench.stage_seconds,
        "settings": {
            "presets": options.presets,
            "months": options.months,
            "seed": options.seed,
            "stages": options.stages,
        },
    }
    figures = {k: v for k, v in figures.items() if v != {}}
    return write(options.out, figures)
