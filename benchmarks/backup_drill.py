"""`python -m benchmarks.backup_drill`: how long the automated backup and its restore
drill take on a built database (docs/reliability.md#automated-backups).

Builds a preset's month (ingest + `dbt run --full-refresh`, untimed) on the
benchmark's server (an embedded one in `<work>/pg` unless DATABASE_URL is set),
then times `rotated_backup` (pg_dump of the platform database in one snapshot, with
every table's row count) and `restore_drill` (pg_restore into the scratch
database, count, drop). Dagster's storage is not part of this database's backup
here (the benchmark server has none); it adds what its run history weighs.
"""

from __future__ import annotations

import argparse
import shutil
import time
from datetime import timedelta
from pathlib import Path

from benchmarks import refresh
from benchmarks.datasets import dataset
from benchmarks.server import bench_server
from platform_core.backup import restore_drill, rotated_backup, row_counts
from platform_core.database import connect

DATABASE = "bench_backup"


def run(work: Path, preset: str, months: int, seed: int, repeat: int) -> dict[str, object]:
    ds = dataset(work, preset, months, seed)
    root = work / "backups"
    shutil.rmtree(root, ignore_errors=True)
    with bench_server(work) as server:
        url = server.fresh_database(DATABASE)
        print(f"  building {preset} ({months} month(s), seed {seed}) …", flush=True)
        refresh.prepare(url, ds)
        with connect(url) as conn:
            database_bytes = conn.execute("select pg_database_size(current_database())").fetchone()[
                0
            ]
            clock = time.perf_counter()
            counts = row_counts(conn)
            count_seconds = time.perf_counter() - clock
        backups, drills = [], []
        for attempt in range(repeat):
            print(f"  backup + drill {attempt + 1}/{repeat} …", flush=True)
            clock = time.perf_counter()
            done = rotated_backup(url, root, keep=1)
            backups.append(time.perf_counter() - clock)
            clock = time.perf_counter()
            report = restore_drill(url, root, max_age=timedelta(hours=1))
            drills.append(time.perf_counter() - clock)
            if not report.passed:
                raise RuntimeError(f"the drill failed: {report.problems + report.mismatches}")
            time.sleep(1)  # backup folders are named to the second
        server.drop_database(DATABASE)
    return {
        "preset": preset,
        "months": months,
        "tables": len(counts),
        "rows": sum(counts.values()),
        "database_mb": round(database_bytes / 1e6, 1),
        "dump_mb": round(done.size_bytes / 1e6, 1),
        "row_count_seconds": round(count_seconds, 2),
        "backup_seconds": [round(s, 2) for s in backups],
        "drill_seconds": [round(s, 2) for s in drills],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backup_drill")
    parser.add_argument("--preset", default="growth")
    parser.add_argument("--months", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="backups and drills timed")
    parser.add_argument("--work", default="data/bench", help="generated data, embedded server")
    args = parser.parse_args(argv)
    figures = run(Path(args.work), args.preset, args.months, args.seed, args.repeat)
    width = max(len(key) for key in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
