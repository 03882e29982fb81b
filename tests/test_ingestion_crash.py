"""A load killed mid-COPY leaves no partial batch, and the next run completes it (docs/contract.md §3.4)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
from psycopg import sql

from ingestion import ingest_directory
from synthetic_crm import generate
from tests.conftest import create_database, drop_database
from tests.ingest_helpers import counts, fetch

ROWS = 400_000


def write_big_touchpoints(path: Path) -> None:
    with open(path, "w") as handle:
        handle.write("touchpoint_id,org_id,deal_id,partner_id,touchpoint_type,occurred_at\n")
        for i in range(ROWS):
            bad = "" if i % 1000 else "x"  # every 1000th row is broken: quarantined
            handle.write(f"t{i},o{i % 97},d{i // 3},p{i % 501},Demo,2026-01-02T03:04:05Z{bad}\n")


def test_killed_load_leaves_nothing_and_rerun_completes(
    fresh_db_url: str, landing: Path, tmp_path: Path
) -> None:
    write_big_touchpoints(landing / "touchpoints_big.csv")
    env = dict(os.environ, DATABASE_URL=fresh_db_url)
    loader = subprocess.Popen(
        [sys.executable, "-m", "attribution.cli", "ingest", str(landing)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Wait until the server reports the COPY under way, then kill the loader outright.
    deadline = time.monotonic() + 60
    copied = 0
    while time.monotonic() < deadline and loader.poll() is None:
        row = fetch(
            fresh_db_url, "select coalesce(max(tuples_processed), 0) from pg_stat_progress_copy"
        )
        copied = row[0][0]
        if copied > 1000:
            break
        time.sleep(0.02)
    assert loader.poll() is None, (
        "the load finished before it could be killed; make the file bigger"
    )
    assert copied > 1000
    loader.send_signal(signal.SIGKILL)
    loader.wait()

    # Nothing of the batch is visible: no rows, no quarantine, no ledger entry.
    assert counts(fresh_db_url) == dict.fromkeys(counts(fresh_db_url), 0)
    assert fetch(fresh_db_url, "select count(*) from raw.ingest_batches") == [(0,)]

    report = ingest_directory(fresh_db_url, landing)
    (result,) = report.files
    assert result.status == "loaded"
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (
        ROWS,
        ROWS - 400,
        400,
    )
    assert counts(fresh_db_url)["touchpoints"] == ROWS - 400
    assert counts(fresh_db_url)["quarantine"] == 400
    assert fetch(fresh_db_url, "select count(*) from raw.ingest_batches") == [(1,)]


# Columns that differ between two loads of the same files (ids, clocks, paths).
# Ids, clocks and paths. A file's times are recorded only once they had settled
# (ingestion/discovery.py, SETTLE_NS): a clock too.
VOLATILE = ("batch_id", "loaded_at", "quarantined_at", "started_at", "finished_at", "file_path",
            "file_mtime_ns", "file_ctime_ns")  # fmt: skip


def raw_contents(url: str) -> dict[str, list[str]]:
    """Every raw table and the ledger as sorted JSON rows, without ids, clocks and paths."""
    contents = {}
    with psycopg.connect(url) as conn:
        for table in ("organizations", "partners", "deals", "touchpoints", "fx_rates",
                      "quarantine", "ingest_batches"):  # fmt: skip
            drop = sql.SQL(" - ").join(sql.Literal(c) for c in VOLATILE)
            query = sql.SQL("select (to_jsonb(t) - {})::text from raw.{} as t order by 1").format(
                drop, sql.Identifier(table)
            )
            contents[table] = [row[0] for row in conn.execute(query)]
    return contents


def test_directory_load_killed_repeatedly_ends_equal_to_one_uninterrupted_load(
    server_url: str, fresh_db_url: str, tmp_path: Path
) -> None:
    """`attribution ingest` of a whole export killed three times — after the k-th file
    committed (k seeded-random), plus a random 0-0.05 s — then run to the end: the raw
    tables and the ledger equal one uninterrupted load, each file in the ledger once."""
    export = tmp_path / "export"
    generate(export, orgs=5, days=20, seed=44)
    files = len(list(export.iterdir()))
    env = dict(os.environ, DATABASE_URL=fresh_db_url)
    rng = random.Random(5)
    for kill in range(3):
        target = fetch(fresh_db_url, "select count(*) from raw.ingest_batches")[0][0]
        target += rng.randint(1, files // 6)  # leaves half the files for the last kill
        loader = subprocess.Popen(
            [sys.executable, "-m", "attribution.cli", "ingest", str(export)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        while loader.poll() is None:
            if fetch(fresh_db_url, "select count(*) from raw.ingest_batches")[0][0] >= target:
                time.sleep(rng.uniform(0, 0.05))  # mid-file: the loader does ~100 files/s
                break
            time.sleep(0.01)
        assert loader.poll() is None, f"kill {kill}: the load ended before its kill point"
        loader.send_signal(signal.SIGKILL)
        loader.wait()
    loaded = fetch(fresh_db_url, "select count(*) from raw.ingest_batches")[0][0]
    assert 3 <= loaded < files  # the kills really left the directory part-loaded

    assert ingest_directory(fresh_db_url, export).ok
    expected = create_database(server_url, "crash_expected")
    try:
        assert ingest_directory(expected, export).ok
        assert raw_contents(fresh_db_url) == raw_contents(expected)
    finally:
        drop_database(server_url, "crash_expected")
    ledger = fetch(
        fresh_db_url, "select count(*), count(distinct file_name) from raw.ingest_batches"
    )
    assert ledger == [(files, files)]
