"""Dagster's built-in freshness check on raw/deals, and what the checks' metadata says.

Real loads through the `ingest` job on a PostgreSQL-backed instance, opened the way
`attribution run` opens it; the freshness sensor evaluated on that instance and
its run requests executed. "26 hours ago" is made by moving the ledger's times
of the deals load back (the load's time comes from the ledger, as it does for a
load made by `attribution ingest`). The great-expectations metadata comes from
a real failing expectation, run as its Dagster asset check.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from orchestration.definitions import build_definitions
from orchestration.defs.attribution.checks import FRESHNESS, RAW_DEALS
from orchestration.defs.ingestion.assets import (
    LAST_UPDATED,
    LEDGER_KEY,
    QUARANTINE_KEY,
    RAW_TABLE_KEYS,
)
from orchestration.instance import instance_ref, open_instance
from orchestration.resources import configured_resources
from orchestration.run import pooled_storage
from platform_core.settings import Settings, project_root
from tests.conftest import create_database, drop_database
from tests.ingest_helpers import deal, fetch, partner, write_csv

FRESHNESS_CHECK = dg.AssetCheckKey(RAW_DEALS, "freshness_check")
AGED = FRESHNESS.total_seconds() + 3600  # a load 27 h ago


@pytest.fixture(scope="module")
def deployment(
    db_url: str, server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """The settings, definitions and instance of a deployment, as `attribution run` builds them."""
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    dagster_url = create_database(server_url, "test_builtin_checks_dagster")
    landing = tmp_path_factory.mktemp("landing")
    settings = Settings.from_environment(
        {
            "DATABASE_URL": db_url,
            "LANDING_DIR": str(landing),
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": dagster_url.replace("postgresql://", "postgresql+psycopg2://", 1),
        }
    )
    definitions = build_definitions(configured_resources(settings, db_url))
    # Storage connections kept open as `attribution run` keeps them (orchestration/run.py).
    with open_instance(instance_ref(settings, db_url)) as instance, pooled_storage(instance):
        yield {
            "url": db_url,
            "landing": landing,
            "definitions": definitions,
            "instance": instance,
        }
    drop_database(server_url, "test_builtin_checks_dagster")


def _ingest(deployment: dict) -> dg.ExecuteInProcessResult:
    result = (
        deployment["definitions"]
        .resolve_job_def("ingest")
        .execute_in_process(instance=deployment["instance"])
    )
    assert result.success
    return result


def _freshness(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.asset_check_key == FRESHNESS_CHECK
    ]
    return evaluation


def _raw_deals(result: dg.ExecuteInProcessResult) -> dg.AssetMaterialization:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == RAW_DEALS]
    return event.materialization


def _tick(deployment: dict) -> dg.RunRequest | dg.SkipReason:
    sensor = deployment["definitions"].get_sensor_def("deals_freshness_sensor")
    return sensor(dg.build_sensor_context(instance=deployment["instance"]))


def _run_requested(deployment: dict, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Execute what the sensor asked for: its checks, nothing materialized."""
    return (
        deployment["definitions"]
        .get_implicit_global_asset_job_def()
        .get_subset(
            asset_check_selection=set(request.asset_check_keys or []), asset_selection=set()
        )
        .execute_in_process(instance=deployment["instance"])
    )


def _deals_load(url: str) -> tuple[float, int]:
    """(finished_at as epoch, batch id) of the newest deals batch that loaded rows."""
    ((finished, batch),) = fetch(
        url,
        "select extract(epoch from finished_at)::float8, batch_id from raw.ingest_batches"
        " where entity = 'deals' and rows_loaded > 0 order by batch_id desc limit 1",
    )
    return finished, batch


def test_the_freshness_check_is_the_built_in_one_with_a_running_sensor(deployment: dict) -> None:
    repo = deployment["definitions"].get_repository_def()
    assert FRESHNESS_CHECK in repo.asset_graph.asset_check_keys
    sensor = repo.get_sensor_def("deals_freshness_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    # Evaluated in every job that loads, `daily_refresh` (what `attribution run` executes) included.
    for job in ("daily_refresh", "ingest", "ingest_and_attribute"):
        assert FRESHNESS_CHECK in repo.get_job(job).asset_layer.asset_graph.asset_check_keys
    # Its own cadence is the sensor's; backlog_watch evaluates the other two.
    watched = repo.get_job("backlog_watch").asset_layer.asset_graph.asset_check_keys
    assert {k.name for k in watched} == {"backlog_within_limits", "marts_consistent"}


def test_sensor_evaluates_the_check_then_waits_for_a_load(deployment: dict) -> None:
    """Never evaluated: the sensor asks for it; failed ("never materialized") and raw/deals
    not updated since: it waits."""
    first = _tick(deployment)
    assert isinstance(first, dg.RunRequest) and first.asset_check_keys == [FRESHNESS_CHECK]
    evaluation = _freshness(_run_requested(deployment, first))
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "never" in (evaluation.description or "")
    assert isinstance(_tick(deployment), dg.SkipReason)


def test_a_platform_without_deals_counts_from_its_creation(deployment: dict) -> None:
    """A load without deals files: raw/deals's last update is when the database was
    created, so a new platform has 26 h to receive its first deals."""
    write_csv(deployment["landing"] / "partners_first.csv", [partner("p1", "o1")])
    result = _ingest(deployment)
    metadata = _raw_deals(result).metadata
    ((created,),) = fetch(
        deployment["url"],
        "select extract(epoch from min(applied_at))::float8 from public.schema_migrations",
    )
    assert metadata["files_loaded"].value == 0
    assert metadata[LAST_UPDATED].value == pytest.approx(created)
    assert _freshness(result).passed  # migrated minutes ago
    partners = next(
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == RAW_TABLE_KEYS["partners"]
    )
    assert partners.metadata[LAST_UPDATED].value > created


def test_a_deals_load_is_fresh_and_a_run_without_deals_is_not_a_load(deployment: dict) -> None:
    url, landing = deployment["url"], deployment["landing"]
    write_csv(
        landing / "deals_first.csv",
        [deal("d1", "won", "100", "USD", "2026-03-02", "2026-03-02")],
    )
    loaded = _ingest(deployment)
    finished, batch = _deals_load(url)
    evaluation = _freshness(loaded)
    assert evaluation.passed, evaluation.description
    materialization = _raw_deals(loaded)
    assert materialization.metadata["rows_loaded"].value == 1
    assert materialization.metadata[LAST_UPDATED].value == pytest.approx(finished)
    # Passed, and cannot turn before 26 h: the sensor starts nothing.
    assert isinstance(_tick(deployment), dg.SkipReason)

    # The deals were loaded 27 h ago; then a run that brings only partners.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "update raw.ingest_batches set started_at = started_at - make_interval(secs => %s),"
            " finished_at = finished_at - make_interval(secs => %s) where entity = 'deals'",
            [AGED, AGED],
        )
    write_csv(landing / "partners_second.csv", [partner("p2", "o1")])
    stale = _ingest(deployment)
    materialization = _raw_deals(stale)
    assert materialization.metadata["files_loaded"].value == 0
    # raw/deals is materialized (its dbt models depend on it) but says when deals last came.
    assert materialization.metadata[LAST_UPDATED].value == pytest.approx(finished - AGED)
    assert materialization.metadata["last_load"].value == f"batch {batch}"
    evaluation = _freshness(stale)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert "overdue" in (evaluation.description or "")
    assert evaluation.metadata["dagster/last_updated_timestamp"].value == pytest.approx(
        finished - AGED
    )
    # The data version of raw/deals did not change: the same batch is its newest.
    versions = [
        _raw_deals(r).tags.get("dagster/data_version") if _raw_deals(r).tags else None
        for r in (loaded, stale)
    ]
    assert versions == [f"batch {batch}"] * 2, versions

    # Failed, raw/deals not updated since the evaluation: the sensor waits.
    assert isinstance(_tick(deployment), dg.SkipReason)
    # New deals, loaded by a run that does not evaluate the check (raw tables only):
    # the sensor asks for the check, which passes.
    write_csv(
        landing / "deals_second.csv",
        [deal("d2", "won", "50", "USD", "2026-03-03", "2026-03-03")],
    )
    raw_only = (
        deployment["definitions"]
        .get_implicit_global_asset_job_def()
        .get_subset(
            asset_selection={*RAW_TABLE_KEYS.values(), LEDGER_KEY, QUARANTINE_KEY},
            asset_check_selection=set(),
        )
        .execute_in_process(instance=deployment["instance"])
    )
    assert raw_only.success and not list(raw_only.get_asset_check_evaluations())
    request = _tick(deployment)
    assert isinstance(request, dg.RunRequest) and request.asset_check_keys == [FRESHNESS_CHECK]
    evaluation = _freshness(_run_requested(deployment, request))
    assert evaluation.passed, evaluation.description
    assert evaluation.metadata["dagster/last_updated_timestamp"].value == pytest.approx(
        _deals_load(url)[0]
    )
    assert evaluation.metadata["dagster/last_updated_timestamp"].value > time.time() - 600


# A real failing expectation: int_deals__current with the columns its expectations
# read, bad rows in two organizations (ids with Markdown characters in them).
DEALS_TABLE = """
create schema if not exists intermediate;
create table intermediate.int_deals__current (
    deal_id text primary key, org_id text not null, status text, amount numeric,
    closed_at timestamptz
);
insert into intermediate.int_deals__current values
    ('ok-1', 'org_a', 'won', 10, '2026-03-02'), ('ok-2', 'org_a', 'open', 0, null),
    ('ok-3', 'org_b', 'lost', 5, '2026-03-02'), ('ok-4', 'org_b', 'won', 1e-400, '2026-03-02'),
    ('neg|1', 'org_a', 'won', -1, '2026-03-02'), ('neg*2', 'org_a', 'open', -2, null),
    ('neg<3>', 'org_b', 'lost', -3, '2026-03-02'), ('odd', 'org_b', 'maybe', 7, null);
"""


def test_gx_metadata_counts_the_rows_checked_and_lists_the_failing_ids(
    fresh_db_url: str, tmp_path: Path
) -> None:
    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        conn.execute(DEALS_TABLE)
    settings = Settings.from_environment(
        {"DATABASE_URL": fresh_db_url, "LANDING_DIR": str(tmp_path)}
    )
    definitions = build_definitions(configured_resources(settings, fresh_db_url))
    asset = dg.AssetKey(["intermediate", "int_deals__current"])
    checks = {
        dg.AssetCheckKey(asset, name)
        for name in (
            "gx_deal_amount_non_negative",
            "gx_deal_status_valid",
            "gx_closed_deals_have_closed_at",
        )
    }
    result = (
        definitions.get_implicit_global_asset_job_def()
        .get_subset(asset_check_selection=checks, asset_selection=set())
        .execute_in_process(instance=dg.DagsterInstance.ephemeral())
    )
    by_name = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(by_name) == {k.name for k in checks}

    negative = by_name["gx_deal_amount_non_negative"]  # a row query: GX counts no elements
    assert not negative.passed and negative.severity == dg.AssetCheckSeverity.ERROR
    metadata = {k: v.value for k, v in negative.metadata.items()}
    assert metadata["element_count"] == 8
    assert metadata["unexpected_count"] == 3
    assert metadata["unexpected_percent"] == pytest.approx(37.5)
    table = metadata["failing_rows"]
    assert "| organization | failing rows | sample deal\\_id |" in table
    assert "| org\\_a | 2 | neg\\*2, neg\\|1 |" in table, table
    assert "| org\\_b | 1 | neg\\<3\\> |" in table, table
    assert metadata["failing_org_ids"] == "org_a, org_b"

    status = by_name["gx_deal_status_valid"]  # a column expectation
    metadata = {k: v.value for k, v in status.metadata.items()}
    assert not status.passed
    assert (metadata["element_count"], metadata["unexpected_count"]) == (8, 1)
    assert metadata["unexpected_percent"] == pytest.approx(12.5)
    assert "| org\\_b | 1 | odd |" in metadata["failing_rows"]

    closed = by_name["gx_closed_deals_have_closed_at"]
    metadata = {k: v.value for k, v in closed.metadata.items()}
    assert closed.passed
    assert (metadata["element_count"], metadata["unexpected_count"]) == (8, 0)
    assert metadata["unexpected_percent"] == 0.0 and "failing_rows" not in metadata
