"""Ingestion stage: our loader against `psql \\copy` and pandas `to_sql`, same file.

The file is one month of touchpoints concatenated into a single CSV (the
largest entity). Peers:
- `psql \\copy` into an unindexed table of text columns: the bulk-load ceiling of
  this server (no parsing, no validation, no ledger);
- `pandas.read_csv` + `DataFrame.to_sql(method="multi", chunksize=10_000)` through
  SQLAlchemy, on a prefix of the file when it is large (its rate is what counts).
Our loader runs in a subprocess, so its peak RSS is measured alone, at two
file sizes (a quarter of the file, then all of it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from benchmarks.datasets import Dataset, concatenated, count_rows
from benchmarks.server import BenchServer
from benchmarks.stats import rate
from platform_core.database import sqlalchemy_url

ENTITY = "touchpoints"
PANDAS_MAX_ROWS = 100_000
PEER_SCHEMA = "bench_peer"


def run_loader(url: str, directory: Path) -> dict:
    """`ingest_directory` in a fresh Python process; its JSON figures."""
    env = dict(os.environ, BENCH_DATABASE_URL=url)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.memprobe", str(directory)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"loader failed: {done.stderr.strip()[-2000:] or done.stdout[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _peer_table(url: str, table: str, columns: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(PEER_SCHEMA)))
        target = sql.Identifier(PEER_SCHEMA, table)
        conn.execute(sql.SQL("drop table if exists {}").format(target))
        conn.execute(
            sql.SQL("create table {} ({})").format(
                target,
                sql.SQL(", ").join(sql.SQL("{} text").format(sql.Identifier(c)) for c in columns),
            )
        )


def psql_copy(server: BenchServer, url: str, path: Path) -> float:
    """Seconds for `psql \\copy` of `path` into an unindexed text table (password by env)."""
    with path.open(encoding="utf-8") as handle:
        columns = handle.readline().strip().split(",")
    _peer_table(url, "psql_copy", columns)
    parts = urlsplit(url)
    env = dict(os.environ, PGPASSWORD=unquote(parts.password or ""))
    quoted_path = str(path).replace("'", "''")
    command = f"\\copy {PEER_SCHEMA}.psql_copy from '{quoted_path}' with (format csv, header true)"
    args = [
        server.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1",
        "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
        "-U", unquote(parts.username or "postgres"), "-d", parts.path.lstrip("/"),
        "-c", command,
    ]  # fmt: skip
    clock = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - clock
    if done.returncode != 0:
        raise RuntimeError(f"psql \\copy failed: {done.stderr.strip()}")
    return seconds


def pandas_to_sql(url: str, path: Path, rows: int) -> float:
    """Seconds for read_csv + to_sql(method="multi", chunksize=10_000) of the first `rows`."""
    import pandas as pd
    from sqlalchemy import create_engine

    engine = create_engine(sqlalchemy_url(url))
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("create schema if not exists {}").format(sql.Identifier(PEER_SCHEMA))
            )
        clock = time.perf_counter()
        frame = pd.read_csv(path, nrows=rows, dtype=str, keep_default_na=False)
        frame.to_sql(
            "pandas_to_sql",
            engine,
            schema=PEER_SCHEMA,
            if_exists="replace",
            index=False,
            method="multi",
            chunksize=10_000,
        )
        return time.perf_counter() - clock
    finally:
        engine.dispose()


def _rows_in(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        query = sql.SQL("select count(*) from {}").format(sql.Identifier(PEER_SCHEMA, table))
        return conn.execute(query).fetchone()[0]


def run(server: BenchServer, ds: Dataset) -> dict:
    """Every ingestion figure for one dataset."""
    full = concatenated(ds, ENTITY)
    total = count_rows(full)
    quarter = concatenated(ds, ENTITY, rows=max(1, total // 4))
    db = "bench_ingest"

    url = server.fresh_database(db)
    print(f"  loader: {total:,} {ENTITY} rows …", flush=True)
    ours = run_loader(url, full.parent)
    url = server.fresh_database(db)
    small = run_loader(url, quarter.parent)

    print("  psql \\copy …", flush=True)
    copy_seconds = psql_copy(server, url, full)
    copied = _rows_in(url, "psql_copy")

    pandas_rows = min(total, PANDAS_MAX_ROWS)
    print(f"  pandas to_sql: {pandas_rows:,} rows …", flush=True)
    pandas_seconds = pandas_to_sql(url, full, pandas_rows)
    pandas_loaded = _rows_in(url, "pandas_to_sql")
    server.drop_database(db)

    ours_rate = rate(ours["rows_read"], ours["seconds"])
    copy_rate = rate(copied, copy_seconds)
    pandas_rate = rate(pandas_loaded, pandas_seconds)
    return {
        "preset": ds.preset,
        "months": ds.months,
        "entity": ENTITY,
        "file": full.name,
        "file_mb": round(full.stat().st_size / 2**20, 1),
        "rows": total,
        "loader": {
            "seconds": round(ours["seconds"], 3),
            "rows_read": ours["rows_read"],
            "rows_loaded": ours["rows_loaded"],
            "rows_quarantined": ours["rows_quarantined"],
            "rows_per_s": ours_rate,
        },
        "psql_copy": {"seconds": round(copy_seconds, 3), "rows": copied, "rows_per_s": copy_rate},
        "pandas_to_sql": {
            "seconds": round(pandas_seconds, 3),
            "rows": pandas_loaded,
            "rows_per_s": pandas_rate,
        },
        # < 1.5 meets docs/contract.md §7 (loader within 1.5× of psql); ≥ 10 for pandas.
        "loader_time_over_psql_copy": round(copy_rate / ours_rate, 2) if ours_rate else None,
        "loader_over_pandas_speed": round(ours_rate / pandas_rate, 1) if pandas_rate else None,
        "peak_rss_mb": [
            {"rows": small["rows_read"], "peak_rss_mb": small["peak_rss_mb"]},
            {"rows": ours["rows_read"], "peak_rss_mb": ours["peak_rss_mb"]},
        ],
    }
