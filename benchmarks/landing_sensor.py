"""Landing sensor and ingest run with many files already loaded: time and cursor size.

    .venv/bin/python -m benchmarks.landing_sensor
    .venv/bin/python -m benchmarks.landing_sensor --files 10 --files 10000 --ticks 20

For each folder size: that many small deals files, all in the ledger (rows inserted
set-based, without trusted times, as a load right after landing leaves them); then
real evaluations of `landing_sensor` (a test Dagster instance) and real runs of
`ingest_directory`. Prints the figures, asserts nothing. Runs on the embedded
server in `<work>/pg` (or on the server of DATABASE_URL, in a scratch database).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import dagster as dg
import psycopg

from benchmarks.server import bench_server
from ingestion import ingest_directory
from ingestion.discovery import SETTLE_NS
from orchestration.defs.ingestion.sensors import landing_sensor
from orchestration.resources import LandingFolder, PlatformDatabase

HEADER = "deal_id,org_id,amount,currency,status,created_at,closed_at,updated_at\n"
SCRATCH_DB = "bench_landing_sensor"


def _land(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"deals_{i:05d}.csv"
        path.write_text(f"{HEADER}s{i},org_1,10,USD,won,2026-02-01,2026-02-02,2026-02-02\n")
        paths.append(path)
    return paths


def _ledger(url: str, paths: list[Path]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("truncate raw.ingest_batches")
        conn.execute(
            "insert into raw.ingest_batches (file_name, file_path, entity, file_format,"
            " content_hash, file_size, started_at, finished_at, outcome)"
            " select name, path, 'deals', 'csv', hash, size, now(), now(), 'loaded'"
            " from unnest(%s::text[], %s::text[], %s::text[], %s::bigint[])"
            " as landed(name, path, hash, size)",
            [
                [p.name for p in paths],
                [str(p) for p in paths],
                [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths],
                [p.stat().st_size for p in paths],
            ],
        )


def _settle(folder: Path) -> None:
    newest = max(p.lstat().st_ctime_ns for p in folder.iterdir())
    while time.time_ns() - SETTLE_NS <= newest:
        time.sleep(0.05)


def _tick(instance: dg.DagsterInstance, resources: dict, cursor: str | None) -> tuple:
    context = dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
    started = time.perf_counter()
    result = landing_sensor(context)
    return time.perf_counter() - started, result, context.cursor


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def measure(url: str, count: int, ticks: int, instance: dg.DagsterInstance) -> dict:
    with tempfile.TemporaryDirectory(prefix="landing_bench_") as tmp:
        folder = Path(tmp)
        paths = _land(folder, count)
        _ledger(url, paths)
        _settle(folder)
        resources = {"database": PlatformDatabase(url=url), "landing": LandingFolder(path=tmp)}
        old_cursor = json.dumps(
            {p.name: [p.stat().st_size, p.stat().st_mtime_ns, "0" * 64, "deals"] for p in paths}
        )
        first, first_result, cursor = _tick(instance, resources, None)
        quiet = []
        for _ in range(ticks):
            seconds, result, cursor = _tick(instance, resources, cursor)
            quiet.append(seconds)
        (folder / "deals_new.csv").write_text(
            f"{HEADER}n1,org_1,1,USD,won,2026-02-01,,2026-02-01\n"
        )
        new_seconds, new_result, _ = _tick(instance, resources, cursor)
        (folder / "deals_new.csv").unlink()
        started = time.perf_counter()
        hashed = ingest_directory(url, folder)  # hashes each file once, keeps its times
        hashed_seconds = time.perf_counter() - started
        started = time.perf_counter()
        unread = ingest_directory(url, folder)
        unread_seconds = time.perf_counter() - started
        return {
            "files": count,
            "first_tick": first,
            "first_tick_says": first_result.skip_message,
            "quiet_tick_median": statistics.median(quiet),
            "quiet_tick_max": max(quiet),
            "quiet_tick_says": result.skip_message,
            "cursor_bytes": len((cursor or "").encode()),
            "first_format_cursor_bytes": len(old_cursor.encode()),
            "new_file_tick": new_seconds,
            "new_file_request": dict(new_result.tags) if new_result.tags else None,
            "ingest_hashing": hashed_seconds,
            "ingest_hashing_lines": len(hashed.lines()),
            "ingest_unread": unread_seconds,
            "ingest_unread_lines": unread.lines(),
        }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.landing_sensor")
    parser.add_argument("--files", type=int, action="append", help="repeatable; default 10, 10000")
    parser.add_argument("--ticks", type=int, default=20, help="quiet ticks timed per size")
    parser.add_argument("--work", default="data/bench", help="embedded server folder")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    with bench_server(work) as server, dg.instance_for_test() as instance:
        url = server.fresh_database(SCRATCH_DB)
        try:
            for count in args.files or [10, 10_000]:
                m = measure(url, count, args.ticks, instance)
                print(f"{m['files']:,} files in the folder, all loaded:")
                print(f"  first tick, no cursor: {_ms(m['first_tick'])} ({m['first_tick_says']})")
                print(
                    f"  quiet tick: median {_ms(m['quiet_tick_median'])}, max"
                    f" {_ms(m['quiet_tick_max'])} over {args.ticks} ({m['quiet_tick_says']})"
                )
                print(
                    f"  cursor: {m['cursor_bytes']:,} bytes (the first format held"
                    f" {m['first_format_cursor_bytes']:,})"
                )
                print(f"  one new file: {_ms(m['new_file_tick'])}, request {m['new_file_request']}")
                print(
                    f"  ingest run, hashing every file: {m['ingest_hashing']:.2f} s,"
                    f" {m['ingest_hashing_lines']} report lines"
                )
                print(f"  ingest run, unchanged files skipped unread: {m['ingest_unread']:.2f} s:")
                for line in m["ingest_unread_lines"]:
                    print(f"    {line}")
        finally:
            server.drop_database(SCRATCH_DB)


if __name__ == "__main__":
    main()
