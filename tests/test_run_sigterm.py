"""SIGTERM and SIGINT stop `attribution run` within seconds (docs/reliability.md).

Dagster retries a step interrupted by a signal when the step has a retry policy
(ingestion and the dbt build have one), so `timeout 90 attribution run` once ran
to the end, 504 s after it started. Now the run stops: the command exits with
128 + the signal number and one `error: stopped by …` line, no child process (dbt,
Dagster's log helpers) is left running, no session of it is left on the
database, the Dagster run is recorded as canceled, and the next run completes
with the marts of a build that was never interrupted.

The runs are held at a chosen point — a lock on `raw.deals` during ingestion, the
watermark row of `fct_deals` during the build — so the signal lands there
however fast the machine is.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from synthetic_crm import generate
from tests.conftest import create_database, drop_database
from tests.dbt_harness import assert_marts_equal, dbt, ingest
from tests.fault_helpers import (
    assert_all_gone,
    attribution_process,
    blocking,
    children_named,
    dagster_run_status,
    descendants,
    finish,
    holding_watermark,
    wait_for_child,
    wait_for_query,
    wait_until_connections_gone,
)
from tests.ingest_helpers import fetch

# "Promptly": seconds, not minutes. Generous, for a busy shared machine.
STOP_BOUND = 30.0
STOPPED = re.compile(r"^error: stopped by (SIG\w+) .*Dagster run ([0-9a-f-]{36}) of daily_refresh")


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate(out, orgs=6, days=20, seed=23)
    return out


def stop_and_check(
    server_url: str,
    run: subprocess.Popen[str],
    log: Path,
    signum: int,
    whole_group: bool,
) -> str:
    """Send `signum` (to the process, or to its group as a terminal or `timeout` does),
    check the stop; returns the Dagster run id. (Whether its sessions left the
    database is checked once the test's own lock holder is gone.)"""
    assert run.poll() is None, "the run ended before the signal"
    started = descendants(run)
    assert started, "the run has no child process: the test proves less than it should"
    clock = time.monotonic()
    if whole_group:
        os.killpg(run.pid, signum)
    else:
        os.kill(run.pid, signum)
    run.wait(timeout=STOP_BOUND + 60)
    seconds = time.monotonic() - clock
    output = log.read_text()
    assert seconds < STOP_BOUND, f"took {seconds:.1f} s to stop:\n{output[-3000:]}"
    assert run.returncode == 128 + signum, output[-3000:]
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    match = STOPPED.match(errors[0])
    assert match and match.group(1) == signal.Signals(signum).name, errors[0]
    assert_all_gone(started)
    assert dagster_run_status(server_url, match.group(2)) == "CANCELED"
    return match.group(2)


def test_sigint_during_ingestion_stops_the_run_within_seconds(
    server_url: str, fresh_db_url: str, export: Path, tmp_path: Path
) -> None:
    """Ctrl-C in a terminal (SIGINT to the whole process group) while a file loads:
    the load rolls back and nothing of the run carries on."""
    env = {
        "DATABASE_URL": fresh_db_url,
        "LANDING_DIR": str(export),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    log = tmp_path / "run.log"
    run = attribution_process(env, "run", log=log)
    with blocking(fresh_db_url, "raw.deals"):  # the first deals file's rows wait here
        wait_for_query(fresh_db_url, "%copy%raw%deals%", process=run)
        stop_and_check(server_url, run, log, signal.SIGINT, whole_group=True)
    wait_until_connections_gone(fresh_db_url, timeout=30)
    assert fetch(fresh_db_url, "select count(*) from raw.deals") == [(0,)]
    assert fetch(
        fresh_db_url, "select count(*) from raw.ingest_batches where entity = 'deals'"
    ) == [(0,)]


@pytest.mark.slow
def test_sigterm_during_the_build_then_the_next_run_equals_a_clean_build(
    server_url: str, export: Path, tmp_path: Path
) -> None:
    """SIGTERM to `attribution run` alone (its dbt must be stopped by it) while
    fct_deals is built; then SIGTERM to the whole group just as dbt starts (the
    case Dagster used to retry); then a run that completes and equals a clean build."""
    url = create_database(server_url, "run_sigterm")
    expected = create_database(server_url, "run_sigterm_expected")
    env = {
        "DATABASE_URL": url,
        "LANDING_DIR": str(export),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    try:
        # 1. The build held inside fct_deals' transaction; SIGTERM to the parent only.
        run = attribution_process(env, "run", log=tmp_path / "run1.log")
        with holding_watermark(url, "fct_deals"):
            wait_for_query(
                url, "%insert into intermediate.dbt_watermarks%'fct_deals'%", process=run
            )
            assert children_named(run, "attribution-dbt")
            stop_and_check(server_url, run, tmp_path / "run1.log", signal.SIGTERM, False)
        wait_until_connections_gone(url, timeout=30)

        # 2. As `timeout` sends it: SIGTERM to every process of the group, dbt just started.
        run = attribution_process(env, "run", log=tmp_path / "run2.log")
        wait_for_child(run, "attribution-dbt build")  # not the parse of the definitions
        stop_and_check(server_url, run, tmp_path / "run2.log", signal.SIGTERM, True)
        wait_until_connections_gone(url, timeout=30)

        # 3. The next run completes; its marts equal a build never interrupted.
        final = attribution_process(env, "run", log=tmp_path / "run3.log")
        output = finish(final, tmp_path / "run3.log", timeout=900)
        assert final.returncode == 0, output[-4000:]
        assert output.rstrip().endswith("done")
        ingest(expected, export)
        dbt(expected, tmp_path / "dbt", "run")
        assert_marts_equal(url, expected)
    finally:
        drop_database(server_url, "run_sigterm")
        drop_database(server_url, "run_sigterm_expected")
