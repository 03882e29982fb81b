"""The System Health panel (monitoring/platform_health): real numbers, real runs, real automation.

One module-scoped deployment: a database built by a real `ingest_and_attribute` run
(the job the landing sensor starts), Dagster storage of its own in PostgreSQL (so
the error rate counts only the runs made here), then one failed run, a failed
error-severity check, a few pending won deals, and platform_health materialized.
Its declarative automation is evaluated for real (`dg.evaluate_automation_conditions`)
around those runs.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from orchestration.definitions import defs as load_defs
from orchestration.defs.attribution import checks
from orchestration.defs.platform.health import HEALTH_KEY, REFRESH_CRON
from orchestration.health_panel import (
    AREAS,
    BACKLOG_FAIL,
    BACKLOG_WARN,
    THRESHOLDS,
    Alerts,
    Backlog,
    Business,
    Capacity,
    Errors,
    Panel,
    Performance,
    Status,
    percentile,
)
from platform_core.settings import project_root
from synthetic_crm import generate
from tests.conftest import create_database, drop_database
from tests.ingest_helpers import fetch

STORAGE = "test_health_dagster_storage"
PENDING = 7  # won deal versions the marts have not seen, added after the build
SENSOR_STARTED_JOBS = ("ingest", "attribution", "ingest_and_attribute")
FAILED_CHECK = (dg.AssetKey(["marts", "fct_partner_attribution"]), "assert_credits_sum_to_one")


@pytest.fixture(scope="module")
def env(db_url: str, tmp_path_factory: pytest.TempPathFactory, server_url: str) -> Iterator[dict]:
    """A deployment's environment, with a Dagster storage database of this module's own."""
    landing = tmp_path_factory.mktemp("landing")
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    storage = create_database(server_url, STORAGE)
    values = {
        "DATABASE_URL": db_url,
        "LANDING_DIR": str(landing),
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": storage.replace("postgresql://", "postgresql+psycopg2://", 1),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in values.items():
            patch.setenv(key, value)
        yield {**values, "landing": landing}
    drop_database(server_url, STORAGE)


@pytest.fixture(scope="module")
def instance(env: dict) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.get() as inst:
        yield inst


@pytest.fixture(scope="module")
def definitions(env: dict) -> dg.Definitions:
    return load_defs()


def _write_deals_closed_today(landing, today: date) -> None:
    day = today.isoformat()
    (landing / "deals_today.csv").write_text(
        "deal_id,org_id,amount,currency,status,created_at,closed_at,updated_at\n"
        f"today-won,org_00001,1200,USD,won,{day},{day},{day}\n"
        f"today-lost,org_00002,800,USD,lost,{day},{day},{day}\n"
    )


def _add_pending_won_deals(url: str, count: int) -> None:
    """Won deal versions the marts have not seen, as a load would leave them."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        (batch_id,) = conn.execute(
            "insert into raw.ingest_batches (file_name, file_path, entity, content_hash,"
            " file_size, started_at, finished_at, outcome)"
            " values ('deals_pending.csv', '/dev/null', 'deals', 'hash-pending', 0, now(), now(),"
            " 'loaded') returning batch_id"
        ).fetchone()
        conn.execute(
            "insert into raw.deals (batch_id, line_no, deal_id, org_id, amount, currency, status,"
            " created_at, closed_at, updated_at)"
            " select %s, n, 'pending-' || n, 'org_00001', 100, 'USD', 'won',"
            " now() - interval '2 days', now() - interval '1 day', now()"
            " from generate_series(1, %s) as n",
            [batch_id, count],
        )


def _ticks(now: datetime) -> list[datetime]:
    """Evaluation times around the 10-minute tick B at or before `now` (so before the
    fixture's refreshes): two before B, one after B, two after B + 10 min."""
    tick = now.replace(minute=now.minute - now.minute % 10, second=0, microsecond=0)
    return [tick + timedelta(seconds=s) for s in (-120, -60, 540, 1140, 1170)]


@dataclass
class Deployment:
    ticks: list[datetime]
    after_build: dg.EvaluateAutomationConditionsResult
    failed_run: dg.ExecuteInProcessResult
    health: dg.ExecuteInProcessResult
    metadata: dict
    expected: dict


@pytest.fixture(scope="module")
def deployment(env: dict, instance: dg.DagsterInstance, definitions: dg.Definitions) -> Deployment:
    url = env["DATABASE_URL"]
    today = datetime.now(UTC).date()
    generate(env["landing"], orgs=6, days=35, seed=21)
    _write_deals_closed_today(env["landing"], today)
    ticks = _ticks(datetime.now(UTC))
    before = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, evaluation_time=ticks[0]
    )
    assert before.get_num_requested(HEALTH_KEY) == 0  # nothing built yet: nothing to measure

    built = definitions.resolve_job_def("ingest_and_attribute").execute_in_process(
        instance=instance
    )
    assert built.success
    after_build = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, evaluation_time=ticks[1], cursor=before.cursor
    )  # before the panel is refreshed below

    # A real failed run: its landing folder is gone.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LANDING_DIR", str(env["landing"] / "missing"))
        failed_run = definitions.resolve_job_def("ingest").execute_in_process(
            instance=instance, raise_on_error=False
        )
    assert not failed_run.success

    # A failed error-severity check, recorded in the event log as a check run records it.
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=FAILED_CHECK[0],
            check_name=FAILED_CHECK[1],
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
        )
    )
    _add_pending_won_deals(url, PENDING)
    with psycopg.connect(url, autocommit=True) as conn:
        preloaded = conn.execute("show shared_preload_libraries").fetchone()[0]
        if "pg_stat_statements" in preloaded:
            conn.execute("create extension if not exists pg_stat_statements")

    refresh = definitions.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={HEALTH_KEY}
    )
    # Twice: the second panel sees the first refresh among the finished runs.
    assert refresh.execute_in_process(instance=instance).success
    health = refresh.execute_in_process(instance=instance)
    assert health.success
    (event,) = health.get_asset_materialization_events()
    # Compared at the same moment: the figures a person would check by hand.
    expected = {
        "active_organizations": fetch(
            url, "select count(*) from marts.dim_organizations where active_partner_count > 0"
        )[0][0],
        "attribution_backlog": fetch(url, "select count(*) from marts.attribution_backlog")[0][0],
        "deals_closed_today": fetch(
            url,
            "select count(*) from marts.fct_deals"
            " where status in ('won', 'lost') and (closed_at at time zone 'UTC')::date = %s",
            [today],
        )[0][0],
        "database_bytes": fetch(url, "select pg_database_size(current_database())")[0][0],
        "data_directory": fetch(url, "show data_directory")[0][0],
        "pg_stat_statements": "pg_stat_statements" in preloaded,
    }
    return Deployment(
        ticks=ticks,
        after_build=after_build,
        failed_run=failed_run,
        health=health,
        metadata=dict(event.materialization.metadata),
        expected=expected,
    )


def _markdown(deployment: Deployment) -> str:
    return deployment.metadata["system_health"].value


def _section(markdown: str, area: str) -> str:
    return markdown.split(f"## {area}: ", 1)[1].split("\n## ", 1)[0]


@pytest.mark.slow  # the module's build: a real ingest_and_attribute run
def test_the_page_has_every_area_with_a_status_word(deployment: Deployment) -> None:
    markdown = _markdown(deployment)
    assert isinstance(deployment.metadata["system_health"], dg.MarkdownMetadataValue)
    assert markdown.splitlines()[0] == "# System health"
    for area in AREAS:
        assert re.search(rf"^## {re.escape(area)}: (OK|WARN|FAIL)$", markdown, re.M), area
        assert re.search(rf"^\| {re.escape(area)} \| \*\*(OK|WARN|FAIL)\*\* \|", markdown, re.M)
    # The probe ran the dashboards as the read-only BI role.
    assert "run as `bi_reader`" in _section(markdown, "Performance")


@pytest.mark.slow  # the module's build: a real ingest_and_attribute run
def test_numbers_match_the_database(deployment: Deployment) -> None:
    meta, expected = deployment.metadata, deployment.expected
    assert meta["active_organizations"].value == expected["active_organizations"] > 0
    assert meta["attribution_backlog"].value == expected["attribution_backlog"] == PENDING
    assert meta["oldest_pending_seconds"].value >= 0
    assert meta["deals_closed_today"].value == expected["deals_closed_today"] >= 2
    assert meta["max_active_partners_per_organization"].value >= (
        meta["avg_active_partners_per_organization"].value
    )
    size_mb = expected["database_bytes"] / 2**20
    assert abs(meta["database_size_mb"].value - size_mb) <= 0.05 * size_mb
    assert meta["connections_in_use"].value >= 1
    assert 0 < meta["bi_query_p95_ms"].value <= meta["bi_query_p99_ms"].value
    # The embedded server's data directory is on this machine: its disk is measured.
    disk = shutil.disk_usage(expected["data_directory"])
    assert abs(meta["disk_free_pct"].value - 100 * disk.free / disk.total) < 2
    if expected["pg_stat_statements"]:  # the probe's own statements, as bi_reader, count
        assert meta["bi_statement_calls"].value > 0
    markdown = _markdown(deployment)
    assert f"**{PENDING}**" in _section(markdown, "Attribution backlog")
    assert f"**{expected['active_organizations']}**" in _section(markdown, "Business")


@pytest.mark.slow  # the module's build: a real ingest_and_attribute run
def test_numeric_metadata_holds_metrics_not_thresholds(deployment: Deployment) -> None:
    numeric = {
        key: entry.value
        for key, entry in deployment.metadata.items()
        if isinstance(entry, dg.IntMetadataValue | dg.FloatMetadataValue)
    }
    assert {"bi_query_p95_ms", "connections_in_use", "run_error_rate_24h"} <= set(numeric)
    names = {name.lower() for name in THRESHOLDS}
    for key in numeric:
        assert key not in names
        assert not re.search(r"threshold|warn|limit|target|max_connections", key), key
    # The thresholds are in the page's text instead.
    assert f"above {BACKLOG_WARN} pending" in _section(_markdown(deployment), "Attribution backlog")


@pytest.mark.slow  # the module's build: a real ingest_and_attribute run
def test_error_rate_and_recent_alerts_come_from_the_runs(deployment: Deployment) -> None:
    meta = deployment.metadata
    # One successful build, one failed load; the health refreshes are not counted.
    assert meta["runs_24h"].value == 2
    assert meta["failed_runs_24h"].value == 1
    assert meta["run_error_rate_24h"].value == 0.5
    markdown = _markdown(deployment)
    assert "## Error rate: FAIL" in markdown  # 50 % is past the 20 % bound
    alerts = _section(markdown, "Recent alerts")
    run_id = deployment.failed_run.run_id
    assert re.search(rf"ingest · run {run_id[:8]} · .*raw\\_tables", alerts), alerts
    assert "failed runs (24 h): 1" in alerts
    # The failed error check is listed, and FAIL while its latest result is a failure.
    assert "failed error-severity check results (24 h): 1" in alerts
    assert "still failing: marts/fct\\_partner\\_attribution · assert\\_credits" in alerts
    assert "## Recent alerts: FAIL" in markdown
    assert meta["failed_error_checks_24h"].value == 1


@pytest.mark.slow  # the module's build: a real ingest_and_attribute run
def test_the_clock_not_the_builds_requests_a_refresh(
    deployment: Deployment, instance: dg.DagsterInstance, definitions: dg.Definitions
) -> None:
    ticks = deployment.ticks
    # A landing-sensor run (the build) starts no refresh: the latency path runs alone.
    assert deployment.after_build.total_requested == 0
    # A 10-minute tick passed, but the panel was refreshed after it (by hand in the
    # fixture, as daily_refresh would): no second refresh.
    refreshed = dg.evaluate_automation_conditions(
        defs=definitions,
        instance=instance,
        evaluation_time=ticks[2],
        cursor=deployment.after_build.cursor,
    )
    assert refreshed.total_requested == 0
    # The next tick requests one refresh, of the panel alone, and only once.
    assert REFRESH_CRON == "*/10 * * * *"
    on_the_tick = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, evaluation_time=ticks[3], cursor=refreshed.cursor
    )
    assert on_the_tick.get_num_requested(HEALTH_KEY) == 1
    assert on_the_tick.total_requested == 1
    settled = dg.evaluate_automation_conditions(
        defs=definitions, instance=instance, evaluation_time=ticks[4], cursor=on_the_tick.cursor
    )
    assert settled.total_requested == 0


def test_the_refresh_is_dagster_automation_outside_the_sensor_started_jobs() -> None:
    repo = load_defs().get_repository_def()
    for job in SENSOR_STARTED_JOBS:
        assert HEALTH_KEY not in repo.get_job(job).asset_layer.executable_asset_keys, job
    # `attribution run` and `demo` (daily_refresh) still build it.
    assert HEALTH_KEY in repo.get_job("daily_refresh").asset_layer.executable_asset_keys
    sensor = repo.get_sensor_def("platform_health_automation")
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.asset_selection.resolve(repo.asset_graph) == {HEALTH_KEY}
    assert repo.asset_graph.get(HEALTH_KEY).automation_condition is not None


def _panel(**changes: object) -> Panel:
    values: dict[str, object] = {
        "performance": Performance({"daily series": [1.0, 2.0, 3.0]}, 1, "bi_reader"),
        "capacity": Capacity(10 * 2**20, 5, 100, 50 * 2**30, 100 * 2**30),
        "business": Business(3, 2, 4.5, 9, 1, date(2026, 1, 1)),
        "backlog": Backlog(0, None),
        "errors": Errors(10, 0, 0),
        "alerts": Alerts(),
        "refreshed_at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    return Panel(**{**values, **changes})  # type: ignore[arg-type]


def test_thresholds_give_each_status() -> None:
    assert _panel().status() == Status.OK
    assert Backlog(BACKLOG_WARN, 1.0).status() == Status.OK
    assert Backlog(BACKLOG_WARN + 1, 1.0).status() == Status.WARN
    assert Backlog(BACKLOG_FAIL + 1, 1.0).status() == Status.FAIL
    assert Backlog(1, 2 * 3600.0).status() == Status.FAIL
    # The panel and the backlog check agree on the bounds.
    assert (BACKLOG_WARN, BACKLOG_FAIL) == (checks.BACKLOG_WARN, checks.BACKLOG_ERROR)
    assert Errors(10, 1, 0).status() == Status.WARN
    assert Errors(10, 2, 0).status() == Status.FAIL
    assert Capacity(1, 80, 100).status() == Status.WARN
    assert Capacity(1, 95, 100).status() == Status.FAIL
    assert Capacity(1, 1, 100, 5, 100).status() == Status.FAIL
    assert Performance({"q": [50.0]}, 1, "bi_reader").status() == Status.WARN
    assert Performance({"q": [500.0]}, 1, "bi_reader").status() == Status.FAIL
    assert Performance({}, 0, "bi_reader").status() == Status.WARN
    assert Alerts(failed_check_count=1, still_failing_checks=["x"]).status() == Status.FAIL
    assert percentile([float(n) for n in range(1, 101)], 0.95) == 95.0


def test_a_remote_server_and_a_missing_extension_are_said_not_guessed() -> None:
    panel = _panel(
        capacity=Capacity(10, 1, 100, disk_note="the server is not on this machine"),
        performance=Performance(
            {"q": [1.0]}, 1, "bi_reader", statements_note="not installed in this database"
        ),
    )
    metrics = panel.metrics()
    assert "disk_free_pct" not in metrics and "disk_free_gb" not in metrics
    assert "bi_statement_calls" not in metrics
    markdown = panel.markdown()
    assert "unknown (the server is not on this machine)" in markdown
    assert "pg_stat_statements: not installed in this database" in markdown
