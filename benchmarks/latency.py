"""Latency stage: a won deal dropped into the landing folder → visible in
`marts.fct_partner_attribution`, with the Dagster daemon's sensors running.

The daemon (`dagster-daemon run`) gets a temporary DAGSTER_HOME whose dagster.yaml
is the repository's, storage in a fresh `bench_dagster` database on the same
server, and an empty landing folder of its own. Waves of won deals (each with a
touchpoint of an existing partner, so they earn attribution rows) are dropped at
random intervals — arrivals are not in step with the sensor ticks — and each
deal's latency is from its file landing to its first row in the mart.
"""

from __future__ import annotations

import contextlib
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from benchmarks.server import BenchServer
from benchmarks.stats import latency_summary
from ingestion.contracts import DEALS, TOUCHPOINTS, Entity
from platform_core.settings import project_root

DAGSTER_DB = "bench_dagster"
POLL_SECONDS = 0.5


def _write_atomically(path: Path, entity: Entity, rows: list[dict[str, str]]) -> None:
    """Written under a hidden name, then renamed: the sensor never sees half a file.
    Columns are the contract's (a field a row lacks is empty; one it does not know fails)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, entity.field_names, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    tmp.rename(path)


def drop_wave(landing: Path, wave: int, partners: list[tuple[str, str]], size: int) -> list[str]:
    """Touchpoints first, then the won deals: the wave has landed when the deals file has."""
    now = datetime.now(UTC)
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    deals, touchpoints = [], []
    for i in range(size):
        org_id, partner_id = partners[(wave * size + i) % len(partners)]
        deal_id = f"bench_latency_{wave:03d}_{i:02d}"
        deals.append(
            {
                "deal_id": deal_id,
                "org_id": org_id,
                "name": f"latency probe {wave}.{i}",
                "amount": "1000.00",
                "currency": "USD",
                "status": "won",
                "created_at": stamp(now - timedelta(days=2)),
                "closed_at": stamp(now - timedelta(minutes=5)),
                "updated_at": stamp(now),
            }
        )
        touchpoints.append(
            {
                "touchpoint_id": f"{deal_id}_tp",
                "org_id": org_id,
                "deal_id": deal_id,
                "partner_id": partner_id,
                "touchpoint_type": "referral",
                "occurred_at": stamp(now - timedelta(days=1)),
            }
        )
    _write_atomically(landing / f"touchpoints_latency_{wave:03d}.csv", TOUCHPOINTS, touchpoints)
    _write_atomically(landing / f"deals_latency_{wave:03d}.csv", DEALS, deals)
    return [row["deal_id"] for row in deals]


def _active_partners(url: str, count: int = 50) -> list[tuple[str, str]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "select org_id, partner_id from marts.partner_performance"
            " where partner_status = 'active' order by partner_id limit %s",
            [count],
        ).fetchall()


def _visible(conn: psycopg.Connection, deal_ids: list[str]) -> set[str]:
    rows = conn.execute(
        "select distinct deal_id from marts.fct_partner_attribution where deal_id = any(%s)",
        [deal_ids],
    ).fetchall()
    return {row[0] for row in rows}


def _runs(dagster_url: str) -> dict[str, dict]:
    """Per job: runs, successes, mean duration (from Dagster's run storage)."""
    with psycopg.connect(dagster_url) as conn:
        rows = conn.execute(
            "select pipeline_name, status, end_time - start_time from runs"
        ).fetchall()
    jobs: dict[str, dict] = {}
    for job, status, seconds in rows:
        entry = jobs.setdefault(job, {"runs": 0, "succeeded": 0, "durations": []})
        entry["runs"] += 1
        entry["succeeded"] += status == "SUCCESS"
        if seconds is not None:
            entry["durations"].append(seconds)
    for entry in jobs.values():
        durations = entry.pop("durations")
        entry["mean_run_seconds"] = round(sum(durations) / len(durations), 1) if durations else None
    return jobs


def _start_daemon(url: str, dagster_url: str, home: Path, landing: Path, log: Path):
    shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    env = dict(
        os.environ,
        DATABASE_URL=url,
        DAGSTER_HOME=str(home),
        DAGSTER_PG_URL=dagster_url.replace("postgresql://", "postgresql+psycopg2://", 1),
        LANDING_DIR=str(landing),
    )
    daemon = str(Path(sys.executable).parent / "dagster-daemon")
    handle = log.open("w")
    # Its own session, so stopping it stops its code server and run workers too.
    return subprocess.Popen(
        [daemon, "run", "-w", "workspace.yaml"],
        cwd=project_root(),
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> None:
    """Stop the daemon, then whatever it started (code server, run workers) in its session."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run(
    server: BenchServer,
    url: str,
    work: Path,
    waves: int = 8,
    deals_per_wave: int = 3,
    max_gap_seconds: float = 40.0,
    timeout_seconds: float = 600.0,
    seed: int = 11,
) -> dict:
    """Drop `waves` waves of won deals; each deal's seconds from landing to the mart."""
    rng = random.Random(seed)
    partners = _active_partners(url)
    if not partners:
        raise RuntimeError("no active partner in the marts: run the attribution stage first")
    dagster_url = server.fresh_database(DAGSTER_DB, migrated=False)
    log = work / "latency-daemon.log"
    with tempfile.TemporaryDirectory(prefix="bench-dagster-") as tmp:
        home, landing = Path(tmp) / "home", Path(tmp) / "landing"
        home.mkdir()
        landing.mkdir()
        process = _start_daemon(url, dagster_url, home, landing, log)
        try:
            # Warm-up wave, not counted: code server start, first sensor ticks, dbt parse.
            print("  latency: warm-up wave …", flush=True)
            _wait_all(url, {d: time.monotonic() for d in drop_wave(landing, 0, partners, 1)},
                      timeout_seconds, process, log)  # fmt: skip
            dropped: dict[str, float] = {}
            seen: dict[str, float] = {}
            for wave in range(1, waves + 1):
                for deal_id in drop_wave(landing, wave, partners, deals_per_wave):
                    dropped[deal_id] = time.monotonic()
                print(f"  latency: wave {wave}/{waves} dropped", flush=True)
                if wave < waves:
                    # The mart is polled during the gap too: a deal is seen when it lands
                    # in the mart, not when the last wave has been dropped.
                    gap = rng.uniform(5, max_gap_seconds)
                    _wait_all(url, dropped, timeout_seconds, process, log, seen, gap)
            _wait_all(url, dropped, timeout_seconds, process, log, seen)
        finally:
            _stop(process)
    latencies = [seen[d] - dropped[d] for d in dropped]
    runs = _runs(dagster_url)
    server.drop_database(DAGSTER_DB)
    summary = latency_summary(latencies)
    return {
        "deals": len(latencies),
        "waves": waves,
        "p50_s": round(summary["p50_ms"] / 1000, 1),
        "p95_s": round(summary["p95_ms"] / 1000, 1),
        "max_s": round(summary["max_ms"] / 1000, 1),
        "latencies_s": sorted(round(x, 1) for x in latencies),
        "runs": runs,
    }


def _wait_all(
    url: str,
    dropped: dict[str, float],
    timeout: float,
    process: subprocess.Popen,
    log: Path,
    seen: dict[str, float] | None = None,
    for_seconds: float | None = None,
) -> dict[str, float]:
    """Poll the mart until every dropped deal is visible (or, with `for_seconds`, for that
    long); `seen` gets when each deal was first seen."""
    seen = {} if seen is None else seen
    start = time.monotonic()
    deadline = start + timeout
    with psycopg.connect(url, autocommit=True) as conn:
        while len(seen) < len(dropped) or for_seconds is not None:
            if for_seconds is not None and time.monotonic() - start >= for_seconds:
                break
            if process.poll() is not None:
                raise RuntimeError(f"dagster-daemon exited ({process.returncode}); see {log}")
            if time.monotonic() > deadline:
                missing = sorted(set(dropped) - set(seen))
                raise RuntimeError(f"not visible after {timeout:.0f} s: {missing[:5]}; see {log}")
            now = time.monotonic()
            unseen = [d for d in dropped if d not in seen]
            if unseen:
                for deal_id in _visible(conn, unseen):
                    seen[deal_id] = now
            time.sleep(POLL_SECONDS)
    return seen
