"""End-to-end runs of the `attribution` command line (docs/contract.md §6.3)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ingest_helpers import good_deal, write_csv


def attribution(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "attribution.cli", *args],
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=600,
    )


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_generate_is_deterministic(tmp_path: Path) -> None:
    for out in ("a", "b"):
        done = attribution("generate", "--preset", "mvp", "--orgs", "6", "--days", "3",
                           "--seed", "9", "--out", str(tmp_path / out))  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "generated" in done.stdout
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


def test_ingest_reports_each_file_and_exit_codes(fresh_db_url: str, landing: Path) -> None:
    write_csv(landing / "deals_ok.csv", [good_deal(), good_deal(deal_id="d2", amount="-3")])
    (landing / "deals_broken.csv").write_text("deal_id\nx\n")
    env = {"DATABASE_URL": fresh_db_url}
    done = attribution("ingest", str(landing), env=env)
    assert done.returncode == 0, done.stderr
    assert "deals_ok.csv" in done.stdout and "quarantined       1" in done.stdout
    assert "deals_broken.csv  REFUSED" in done.stdout and "lacks required column(s)" in done.stdout
    assert fresh_db_url.split("@")[0].split(":")[-1] not in done.stdout  # no password printed
    again = attribution("ingest", str(landing), env=env)
    # One line per kind of skipped file, not one per file.
    assert "  1 file already loaded, skipped\n" in again.stdout
    assert "  1 file already refused, skipped\n" in again.stdout
    assert "deals_ok.csv" not in again.stdout and "REFUSED" not in again.stdout
    missing = attribution("ingest", str(landing / "nope"), env=env)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_run_requires_landing_dir(fresh_db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LANDING_DIR"}
    done = subprocess.run(
        [sys.executable, "-m", "attribution.cli", "run"],
        env=dict(env, DATABASE_URL=fresh_db_url),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "LANDING_DIR" in done.stderr


# ~40-110 s (a subprocess `attribution run` on a fresh database). In `make test` the
# same is covered by tests/test_one_execution_path.py: `attribution run --full-refresh`
# as a subprocess end to end (test_full_refresh_builds_every_mart_and_names_the_failing_
# organization) and the demo's daily_refresh with this summary, models and backlog line
# (test_demo_builds_through_daily_refresh_in_the_instance).
@pytest.mark.slow
def test_run_end_to_end(fresh_db_url: str, tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    assert attribution("generate", "--orgs", "6", "--days", "30", "--seed", "4",
                       "--out", str(landing)).returncode == 0  # fmt: skip
    env = {
        "DATABASE_URL": fresh_db_url,
        "LANDING_DIR": str(landing),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    done = attribution("run", env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "of daily_refresh: succeeded" in done.stdout
    assert "attributed revenue by model" in done.stdout
    for model in ("first_touch", "last_touch", "linear", "time_decay", "position_based"):
        assert model in done.stdout
    assert "attribution backlog: 0 pending" in done.stdout
