"""Killed at any point: the next run ends with exactly the marts of an uninterrupted
run, and no reader ever sees a half-built mart (docs/reliability.md).

Every scenario starts from the same state (the marts built on days 0-19 of a
generated export, days 20-29 ingested but not built yet, cloned from a template
database), kills the build at a chosen point with SIGKILL, runs it again, and
compares every mart row with a build that was never interrupted. A reader thread
polls all marts the whole time: each mart it sees must be either the state before
the build or the final state, and credits always sum to 1 per deal and model.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from platform_core.migrations import migrate
from synthetic_crm import generate
from tests.conftest import create_database, drop_database
from tests.dbt_harness import assert_marts_equal, dbt, ingest, stage
from tests.fault_helpers import (
    MartReader,
    attribution_process,
    children_named,
    clone_database,
    day_files,
    dbt_process,
    finish,
    holding_watermark,
    kill_group,
    mart_states,
    wait_for_batches,
    wait_for_line,
    wait_for_query,
    wait_until_connections_gone,
)
from tests.ingest_helpers import fetch

BASE = "faults_kill_base"
EXPECTED = "faults_kill_expected"
SEED = 20260517


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate(out, orgs=6, days=30, seed=17)
    return out


@pytest.fixture(scope="module")
def databases(
    server_url: str, export: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """BASE: marts of days 0-19, raw rows of days 0-29. EXPECTED: BASE built without a fault."""
    work = tmp_path_factory.mktemp("kill")
    base = create_database(server_url, BASE)
    migrate(base)
    stage(day_files(export, 0, 19), work / "landing")
    ingest(base, work / "landing")
    dbt(base, work / "dbt", "run")
    stage(day_files(export, 20, 29), work / "landing")
    ingest(base, work / "landing")
    expected = clone_database(server_url, BASE, EXPECTED)
    dbt(expected, work / "dbt", "run")
    yield {"base": base, "expected": expected}
    drop_database(server_url, EXPECTED)
    drop_database(server_url, BASE)


def kill_dbt_and_rerun(
    server_url: str,
    databases: dict[str, str],
    tmp_path: Path,
    name: str,
    command: str,
    model: str,
    delay: float,
) -> None:
    url = clone_database(server_url, BASE, name)
    try:
        before = mart_states(url)
        reader = MartReader(url)
        reader.start()
        build = dbt_process(url, [command], tmp_path)
        wait_for_line(build, rf"START sql \S+ model {re.escape(model)} ")
        time.sleep(delay)
        assert build.poll() is None, "the build ended before the kill; pick an earlier point"
        kill_group(build)
        assert build.returncode == -9
        wait_until_connections_gone(url)

        again = dbt_process(url, [command], tmp_path)
        output, _ = again.communicate(timeout=600)
        assert again.returncode == 0, output[-4000:]
        reader.stop()

        assert_marts_equal(url, databases["expected"])
        reader.assert_only_complete_states(before, mart_states(url))
    finally:
        drop_database(server_url, name)


def test_dbt_killed_when_a_mart_starts(
    server_url: str, databases: dict[str, str], tmp_path: Path
) -> None:
    kill_dbt_and_rerun(
        server_url, databases, tmp_path, "faults_kill_fpa", "run",
        "marts.fct_partner_attribution", 0.0,
    )  # fmt: skip


# Deterministic points (a model starts) and seeded random delays after them.
_rng = random.Random(SEED)
KILL_POINTS = [
    ("run", "intermediate.int_deals__current", 0.0),
    ("build", "intermediate.int_attribution__changed_deals", round(_rng.uniform(0, 1.5), 2)),
    ("build", "marts.fct_deals", 0.0),
    ("build", "marts.fct_deals", round(_rng.uniform(0, 1.5), 2)),
    ("run", "marts.partner_performance", round(_rng.uniform(0, 0.5), 2)),
    ("build", "marts.dim_organizations", 0.0),
    ("build", "marts.org_daily_metrics", round(_rng.uniform(0, 1.0), 2)),
]


@pytest.mark.slow
@pytest.mark.parametrize(("command", "model", "delay"), KILL_POINTS)
def test_dbt_killed_at_many_points(
    server_url: str,
    databases: dict[str, str],
    tmp_path: Path,
    command: str,
    model: str,
    delay: float,
) -> None:
    name = f"faults_kill_{command}_{model.split('.')[-1][:20]}_{int(delay * 100)}"
    kill_dbt_and_rerun(server_url, databases, tmp_path, name, command, model, delay)


@pytest.mark.slow
def test_attribution_run_killed_in_every_phase(
    server_url: str, export: Path, tmp_path: Path
) -> None:
    """`attribution run` (the Dagster job daily_refresh, in-process) killed during
    ingestion, during the dbt build, the dbt process alone, and the parent alone
    (its dbt carries on as an orphan): every next run succeeds, and the marts equal
    an uninterrupted build of the same files."""
    url = create_database(server_url, "faults_kill_dagster")
    expected = create_database(server_url, "faults_kill_dagster_expected")
    landing = tmp_path / "landing"
    env = {
        "DATABASE_URL": url,
        "LANDING_DIR": str(landing),
        "DAGSTER_HOME": str(tmp_path / "dagster_home"),
    }
    try:
        migrate(url)
        reader = MartReader(url)

        # 1. Killed while ingestion copies rows.
        stage(day_files(export, 0, 14), landing)
        run = attribution_process(env, "run", log=tmp_path / "run1.log")
        wait_for_batches(url, 10)  # ten files committed, the next one under way
        kill_group(run)
        assert 10 <= fetch(url, "select count(*) from raw.ingest_batches")[0][0] < 40

        # 2. Killed (with its dbt) while fct_partner_attribution is being built.
        # (A model of this small export builds in milliseconds: holding its watermark
        # row keeps the build waiting inside its transaction until the kill.)
        run = attribution_process(env, "run", log=tmp_path / "run2.log")
        with holding_watermark(url, "fct_partner_attribution"):
            wait_for_query(
                url,
                "%insert into intermediate.dbt_watermarks%'fct_partner_attribution'%",
                process=run,
            )
            reader.start()
            kill_group(run)

        # 3. Only the dbt process killed: the Dagster step fails, the run says so.
        stage(day_files(export, 15, 22), landing)
        run = attribution_process(env, "run", log=tmp_path / "run3.log")
        with holding_watermark(url, "fct_deals"):
            wait_for_query(
                url, "%insert into intermediate.dbt_watermarks%'fct_deals'%", process=run
            )
            (dbt_child,) = children_named(run, "attribution-dbt")
            dbt_child.kill()
        output = finish(run, tmp_path / "run3.log")
        assert run.returncode == 1, output[-3000:]
        (error,) = [line for line in output.splitlines() if line.startswith("error:")]
        assert error.startswith("error: daily_refresh failed: dbt_models:"), error
        assert "exit code `-9`" in error and output.rstrip().endswith("FAILED")

        # 4. Only the parent killed: its dbt carries on and holds the build lock; the
        #    next run waits for it, and releases the dead run's slot in the pool.
        stage(day_files(export, 23, 29), landing)
        run = attribution_process(env, "run", log=tmp_path / "run4.log")
        with holding_watermark(url, "int_deals__current"):
            wait_for_query(
                url, "%insert into intermediate.dbt_watermarks%'int_deals__current'%", process=run
            )
            (orphan,) = children_named(run, "attribution-dbt")
            run.kill()
            run.wait()
        final = attribution_process(env, "run", log=tmp_path / "run5.log")
        output = finish(final, tmp_path / "run5.log")
        assert final.returncode == 0, output[-4000:]
        assert "was abandoned by a killed process: marked failed" in output
        assert not orphan.is_running() or orphan.status() == "zombie"
        reader.stop()

        migrate(expected)
        ingest(expected, landing)
        dbt(expected, tmp_path / "dbt", "run")
        # Run 1 was killed mid-load: the loads after it have other batch ids.
        assert_marts_equal(url, expected, ignore_load_ids=True)
        assert not reader.errors, reader.errors[:5]
        assert reader.broken_credit_reads == 0
    finally:
        drop_database(server_url, "faults_kill_dagster")
        drop_database(server_url, "faults_kill_dagster_expected")
