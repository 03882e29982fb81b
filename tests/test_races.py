"""Races: two builds at once, two `daily_refresh` runs at once, the won-deals
sensor's `attribution` run during the daily run (docs/reliability.md).

The work is serialized — by the PostgreSQL build lock that `attribution-dbt`
holds for a whole dbt build, by ingestion's advisory lock, and by Dagster's pool
`attribution_database` — so both contenders succeed, the marts hold no duplicate
row, and they equal the independent reference implementation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from orchestration.dbt_build_lock import BUILD_LOCK, build_lock
from synthetic_crm import generate
from tests.dbt_harness import MARTS, assert_matches_reference, ingest, mart
from tests.fault_helpers import attribution_process, dbt_process, finish, wait_for_line

DEADLOCK = "deadlock detected"


@pytest.fixture
def loaded(fresh_db_url: str, tmp_path: Path) -> str:
    landing = tmp_path / "landing"
    generate(landing, orgs=4, days=20, seed=31)
    ingest(fresh_db_url, landing)
    return fresh_db_url


def lock_holders(url: str) -> int:
    with psycopg.connect(url) as conn:
        (count,) = conn.execute(
            "select count(*) from pg_locks where locktype = 'advisory' and granted"
            " and objid = hashtext(%s)::oid",
            [BUILD_LOCK],
        ).fetchone()  # type: ignore[misc]
    return count


def assert_marts_sound(url: str) -> None:
    for table in MARTS:
        mart(url, table)  # raises on a duplicate key
    assert assert_matches_reference(url) > 20


def test_two_builds_at_once_are_serialized(loaded: str, tmp_path: Path) -> None:
    # Hold the first build inside its first models (they read raw.deals), however
    # fast or slow this machine is, while the second one starts.
    with psycopg.connect(loaded) as gate:
        gate.execute("lock table raw.deals in access exclusive mode")
        first = dbt_process(loaded, ["run"], tmp_path / "first")
        wait_for_line(first, r"START sql \S+ model ")  # the first build holds the lock
        second = dbt_process(loaded, ["run"], tmp_path / "second")
        waiting = wait_for_line(second, r"another dbt build is running on this database; waiting")
        assert not any("START sql" in line for line in waiting)
        assert lock_holders(loaded) == 1
    first_output, _ = first.communicate(timeout=600)
    second_output, _ = second.communicate(timeout=600)
    assert first.returncode == 0, first_output[-3000:]
    assert second.returncode == 0, second_output[-3000:]
    assert "the other dbt build finished; building now" in second_output
    assert DEADLOCK not in first_output + second_output
    assert_marts_sound(loaded)


def test_a_build_waits_for_the_lock_and_parsing_never_does(
    fresh_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with build_lock(fresh_db_url, announce=lambda message: None):
        parse = dbt_process(fresh_db_url, ["parse", "--quiet"], tmp_path / "parse")
        assert parse.wait(timeout=300) == 0  # a command that writes nothing takes no lock
        monkeypatch.setenv("ATTRIBUTION_BUILD_LOCK_WAIT", "2")
        blocked = dbt_process(fresh_db_url, ["run"], tmp_path / "blocked")
        output, _ = blocked.communicate(timeout=300)
    assert blocked.returncode != 0
    assert "held the build lock for more than 2 s; not building" in output
    assert "START sql" not in output
    assert lock_holders(fresh_db_url) == 0  # released with the holder's connection


ATTRIBUTION_JOB = """
import sys
import dagster as dg
from orchestration.definitions import defs
with dg.DagsterInstance.get() as instance:
    result = defs().resolve_job_def("attribution").execute_in_process(
        instance=instance, raise_on_error=False
    )
print("attribution job:", "succeeded" if result.success else "FAILED")
sys.exit(0 if result.success else 1)
"""


@pytest.mark.slow
def test_two_daily_refresh_runs_and_the_sensor_run_at_once(
    fresh_db_url: str, tmp_path: Path
) -> None:
    """Two `attribution run` (each the Dagster job daily_refresh) started together,
    and the `attribution` job the won-deals sensor starts, all on one database and
    one Dagster instance: every run succeeds, each file loads once, no deadlock."""
    landing = tmp_path / "landing"
    generate(landing, orgs=4, days=20, seed=32)
    env = {
        "DATABASE_URL": fresh_db_url,
        "LANDING_DIR": str(landing),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    runs = [attribution_process(env, "run", log=log) for log in logs]
    time.sleep(5)
    from orchestration.instance import dagster_environment
    from platform_core.settings import Settings

    # The same instance as the two runs: their DAGSTER_HOME, storage and database.
    settings = Settings.from_environment({**os.environ, **env})
    sensor_env = {**os.environ, **dagster_environment(settings, fresh_db_url), **env}
    sensor_log = tmp_path / "sensor_run.log"
    with open(sensor_log, "w") as sink:  # Dagster logs a lot: never into an unread pipe
        sensor_run = subprocess.Popen(
            [sys.executable, "-c", ATTRIBUTION_JOB],
            env=sensor_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )
    outputs = [finish(run, log) for run, log in zip(runs, logs, strict=True)]
    sensor_output = finish(sensor_run, sensor_log)
    for run, output in zip(runs, outputs, strict=True):
        assert run.returncode == 0, output[-4000:]
        assert "of daily_refresh: succeeded" in output
    assert sensor_run.returncode == 0, sensor_output[-4000:]
    assert all(DEADLOCK not in text for text in [*outputs, sensor_output])
    with psycopg.connect(fresh_db_url) as conn:
        (files,) = conn.execute("select count(*) from raw.ingest_batches").fetchone()  # type: ignore[misc]
        (distinct,) = conn.execute(  # type: ignore[misc]
            "select count(distinct (file_name, content_hash)) from raw.ingest_batches"
        ).fetchone()
    assert files == distinct == len(list(landing.iterdir()))
    assert_marts_sound(fresh_db_url)
