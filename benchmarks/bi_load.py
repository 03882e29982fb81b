"""BI load stage: 50 concurrent read-only sessions run the dashboard queries in a loop
while `attribution run` (the Dagster job `daily_refresh`) ingests a new day and
rebuilds the marts. Errors must be zero; latencies are reported as p50/p95/p99.

Each session is a thread with its own connection as bi_reader (psycopg releases
the GIL while it waits on the server). The refresh runs as a separate process,
so it does not compete with the sessions for this interpreter. The database
must already hold built marts (`prepare`), and the refresh reads `landing`.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import psycopg

from benchmarks import queries
from benchmarks.server import BenchServer
from benchmarks.stats import latency_summary
from platform_core.settings import project_root

DAGSTER_DB = "bench_dagster_load"


class Sessions:
    """`count` threads, each one BI session looping over the dashboard until stopped."""

    def __init__(self, reader_url: str, count: int, seed: int) -> None:
        self.reader_url = reader_url
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.timings: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.threads = [
            threading.Thread(target=self._session, args=(seed + i,), daemon=True)
            for i in range(count)
        ]

    def _session(self, seed: int) -> None:
        rng = random.Random(seed)
        try:
            conn = psycopg.connect(self.reader_url, autocommit=True)
        except psycopg.Error as exc:
            with self.lock:
                self.errors[f"connect: {type(exc).__name__}: {exc}".strip()] += 1
            return
        with conn:
            span = queries.data_span(conn)
            orgs = queries.organizations(conn)
            while not self.stop.is_set():
                try:
                    timings = queries.run_dashboard(conn, rng.choice(orgs), span, rng)
                except psycopg.Error as exc:
                    with self.lock:
                        self.errors[f"{type(exc).__name__}: {exc}".strip()[:300]] += 1
                    continue
                with self.lock:
                    for name, seconds in timings:
                        self.timings[name].append(seconds)

    def __enter__(self) -> Sessions:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def daily_refresh(server: BenchServer, url: str, landing: Path, log: Path) -> tuple[int, float]:
    """`attribution run` (daily_refresh in Dagster) as a subprocess; (exit code, seconds)."""
    dagster_url = server.fresh_database(DAGSTER_DB, migrated=False)
    with tempfile.TemporaryDirectory(prefix="bench-dagster-") as home:
        env = dict(
            os.environ,
            DATABASE_URL=url,
            LANDING_DIR=str(landing),
            DAGSTER_HOME=home,
            DAGSTER_PG_URL=dagster_url.replace("postgresql://", "postgresql+psycopg2://", 1),
        )
        attribution = str(Path(sys.executable).parent / "attribution")
        clock = time.perf_counter()
        with log.open("w") as handle:
            done = subprocess.run(
                [attribution, "run"],
                env=env,
                cwd=project_root(),
                stdout=handle,
                stderr=subprocess.STDOUT,
                check=False,
            )
        seconds = time.perf_counter() - clock
    server.drop_database(DAGSTER_DB)
    return done.returncode, seconds


def run(
    server: BenchServer, url: str, landing: Path, work: Path, sessions: int = 50, seed: int = 5
) -> dict:
    """The load, from the first session's start to the end of the refresh."""
    log = work / "bi-load-refresh.log"
    with Sessions(server.reader_url(url), sessions, seed) as load:
        time.sleep(2)  # every session connected and looping before the refresh starts
        clock = time.perf_counter()
        code, refresh_seconds = daily_refresh(server, url, landing, log)
        window = time.perf_counter() - clock
    everything = [s for values in load.timings.values() for s in values]
    return {
        "sessions": sessions,
        "refresh_exit_code": code,
        "refresh_seconds": round(refresh_seconds, 1),
        "queries": len(everything),
        "queries_per_s": round(len(everything) / window, 1) if window else None,
        "errors": sum(load.errors.values()),
        "error_messages": dict(load.errors.most_common(5)),
        "latency": latency_summary(everything),
        "per_query": {name: latency_summary(values) for name, values in load.timings.items()},
        "refresh_log": str(log),
    }
