"""A load killed mid-COPY leaves no partial batch, and the next run completes it (SPEC §3.4)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ingestion import ingest_directory
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
