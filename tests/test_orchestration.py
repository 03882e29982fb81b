"""Dagster definitions: load, materialize, sensors, checks and alerts, on real PostgreSQL."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import psycopg
import pytest

from orchestration.definitions import defs as load_defs
from orchestration.defs.attribution.checks import backlog_result
from orchestration.defs.attribution.sensors import (
    MARTS_CATCH_UP_SECONDS,
    marts_catch_up_sensor,
    won_deals_sensor,
)
from orchestration.defs.ingestion.sensors import LANDING_RUN_TAG, landing_sensor
from orchestration.defs.platform.alerts import failed_check_alert
from orchestration.resources import AlertWebhook, LandingFolder, PlatformDatabase
from orchestration.run import pooled_storage
from platform_core.settings import project_root
from synthetic_crm import generate
from tests.conftest import create_database, drop_database
from tests.ingest_helpers import fetch


def dagster_url_plain(env: dict) -> str:
    return env["DAGSTER_PG_URL"].replace("+psycopg2", "")


EXPECTED_JOBS = {"daily_refresh", "ingest", "attribution", "dagster_housekeeping",
                 "database_backup", "backup_restore_drill"}  # fmt: skip
EXPECTED_SENSORS = {
    "landing_sensor",
    "won_deals_sensor",
    "marts_catch_up_sensor",
    "run_failure_alert",
    "failed_check_alert",
    "tenant_session_watchdog",
    "deals_freshness_sensor",  # Dagster's freshness-check sensor (tests/test_builtin_checks.py)
    "platform_health_automation",  # evaluates platform_health's automation condition
}


@pytest.fixture(scope="module")
def env(db_url: str, tmp_path_factory: pytest.TempPathFactory, server_url: str) -> Iterator[dict]:
    """Environment of a deployment: DATABASE_URL, LANDING_DIR, a Postgres-backed DAGSTER_HOME."""
    landing = tmp_path_factory.mktemp("landing")
    home = tmp_path_factory.mktemp("dagster_home")
    shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    dagster_url = create_database(server_url, "test_dagster_storage")
    values = {
        "DATABASE_URL": db_url,
        "LANDING_DIR": str(landing),
        "DAGSTER_HOME": str(home),
        # dagster-postgres runs on psycopg2 (SQLAlchemy 2.1 would pick psycopg 3).
        "DAGSTER_PG_URL": dagster_url.replace("postgresql://", "postgresql+psycopg2://", 1),
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in values.items():
            patch.setenv(key, value)
        yield {**values, "landing": landing}
    drop_database(server_url, "test_dagster_storage")


@pytest.fixture(scope="module")
def instance(env: dict) -> Iterator[dg.DagsterInstance]:
    # Storage connections kept open as `attribution run` keeps them (orchestration/run.py).
    with dg.DagsterInstance.get() as inst, pooled_storage(inst):
        yield inst


@pytest.fixture(scope="module")
def definitions(env: dict) -> dg.Definitions:
    return load_defs()


def test_definitions_load_with_the_whole_graph(definitions: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(definitions)
    repo = definitions.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    raw = {f"raw/{t}" for t in ("organizations", "partners", "deals", "touchpoints", "fx_rates",
                                "ingest_batches", "quarantine")}  # fmt: skip
    marts = {f"marts/{t}" for t in ("fct_partner_attribution", "fct_deals", "partner_performance",
                                    "org_daily_metrics", "dim_organizations", "attribution_backlog")}  # fmt: skip
    assert raw | marts | {"monitoring/platform_health", "staging/stg_crm__deal_versions",
                          "intermediate/int_incremental__watermarks"} <= keys  # fmt: skip
    # Lineage connects raw → staging → marts with no glue: the dbt source is raw/deals.
    graph = repo.asset_graph
    assert (
        dg.AssetKey(["raw", "deals"])
        in graph.get(dg.AssetKey(["staging", "stg_crm__deal_versions"])).parent_keys
    )
    groups = {graph.get(dg.AssetKey(k.split("/"))).group_name for k in raw | marts}
    assert groups == {"ingestion", "marts"}
    assert {j.name for j in repo.get_all_jobs()} >= EXPECTED_JOBS
    assert {s.name for s in repo.sensor_defs} == EXPECTED_SENSORS
    schedules = {s.name: s.cron_schedule for s in repo.schedule_defs}
    assert schedules["daily_refresh_schedule"] == "0 1 * * *"
    checks = {key.name for key in graph.asset_check_keys}
    assert {"backlog_within_limits", "assert_credits_sum_to_one", "freshness_check"} <= checks
    # Deals freshness is Dagster's built-in check, on raw/deals.
    freshness = dg.AssetCheckKey(dg.AssetKey(["raw", "deals"]), "freshness_check")
    assert freshness in graph.asset_check_keys
    assert any(name.startswith("unique_") for name in checks)  # dbt tests as asset checks
    # Backups (tests/test_backup_schedule.py): their own job, schedules and check, outside
    # daily_refresh.
    backup = dg.AssetKey(["platform", "database_backup"])
    assert {"database_backup_schedule", "backup_restore_drill_schedule"} <= set(schedules)
    assert dg.AssetCheckKey(backup, "restore_drill") in graph.asset_check_keys
    daily = definitions.resolve_job_def("daily_refresh")
    assert backup not in daily.asset_layer.selected_asset_keys
    assert not any("restore_drill" in node.name for node in daily.nodes)


def test_backlog_thresholds() -> None:
    assert backlog_result(500, 10.0).passed
    warn = backlog_result(501, 10.0)
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    error = backlog_result(1001, 10.0)
    assert not error.passed and error.severity == dg.AssetCheckSeverity.ERROR
    assert error.metadata["pending_won_deals"].value == 1001
    # Metadata is what was measured (plotted over time); the limits are in the text.
    assert set(error.metadata) == {"pending_won_deals", "oldest_pending_seconds"}
    assert "warn above 500, error above 1000" in (error.description or "")


def test_daily_refresh_materializes_everything_and_checks_pass(
    env: dict, instance: dg.DagsterInstance, definitions: dg.Definitions
) -> None:
    generate(env["landing"], orgs=6, days=35, seed=21)
    result = definitions.resolve_job_def("daily_refresh").execute_in_process(instance=instance)
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {
        "raw/deals",
        "marts/fct_partner_attribution",
        "monitoring/platform_health",
    } <= materialized
    evaluations = list(result.get_asset_check_evaluations())
    failed = {e.check_name: e for e in evaluations if not e.passed}
    # The generator writes a few touchpoints of unknown / other-org partners on purpose:
    # the data-quality check counts them (a warning); every other check passes.
    assert len(evaluations) > 50 and set(failed) <= {"gx_touchpoint_partner_known_same_org"}, failed
    (expected_bad,) = fetch(
        env["DATABASE_URL"],
        "select count(*) from intermediate.int_touchpoints__current t"
        " left join intermediate.int_partners__current p"
        " using (partner_id) where p.partner_id is null or p.org_id <> t.org_id",
    )[0]
    if failed:
        warning = failed["gx_touchpoint_partner_known_same_org"]
        assert warning.severity == dg.AssetCheckSeverity.WARN
        assert warning.metadata["unexpected_count"].value == expected_bad > 0
        # The rows checked are the table's; the failing ids are listed.
        (touchpoints,) = fetch(
            env["DATABASE_URL"], "select count(*) from intermediate.int_touchpoints__current"
        )[0]
        assert warning.metadata["element_count"].value == touchpoints > expected_bad
        assert warning.metadata["unexpected_percent"].value == pytest.approx(
            100 * expected_bad / touchpoints, abs=1e-4
        )
        assert "| organization | failing rows |" in warning.metadata["failing_rows"].value
    # Dagster's freshness check on raw/deals ran in the run (so `attribution run` lists it).
    freshness = [e for e in evaluations if e.check_name == "freshness_check"]
    assert [e.asset_key for e in freshness] == [dg.AssetKey(["raw", "deals"])]
    assert freshness[0].passed
    raw_deals = [e for e in result.get_asset_materialization_events()
                 if e.asset_key == dg.AssetKey(["raw", "deals"])][0]  # fmt: skip
    assert raw_deals.materialization.metadata["rows_loaded"].value > 0
    # Runs and check history are in PostgreSQL (dagster-postgres), not in memory.
    assert fetch(dagster_url_plain(env), "select count(*) from runs")[0][0] >= 1


def test_landing_sensor_requests_each_new_file_once(
    env: dict, instance: dg.DagsterInstance
) -> None:
    resources = {
        "database": PlatformDatabase(url=env["DATABASE_URL"]),
        "landing": LandingFolder(path=str(env["landing"])),
    }
    context = dg.build_sensor_context(instance=instance, resources=resources)
    first = landing_sensor(context)
    assert isinstance(first, dg.SkipReason)  # everything was loaded by the daily refresh
    (env["landing"] / "deals_extra.csv").write_text(
        "deal_id,org_id,amount,currency,status,created_at,closed_at,updated_at\n"
        "x1,org_00001,10,USD,won,2026-02-01,2026-02-02,2026-02-02\n"
    )
    cursor = context.cursor
    second = landing_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
    )
    assert isinstance(second, dg.RunRequest) and second.run_key
    # A deals file can change attribution: load and build in one run.
    assert second.job_name == "ingest_and_attribute"
    # Same file, next tick (the run has not loaded it yet): the same run key, so no second load.
    again = landing_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor)
    )
    assert isinstance(again, dg.RunRequest) and again.run_key == second.run_key


def test_landing_sensor_waits_for_a_queued_landing_run(
    env: dict, instance: dg.DagsterInstance, definitions: dg.Definitions
) -> None:
    """Files landing while a landing run waits in the queue are left to that run."""
    resources = {
        "database": PlatformDatabase(url=env["DATABASE_URL"]),
        "landing": LandingFolder(path=str(env["landing"])),
    }
    (env["landing"] / "deals_waiting.csv").write_text(
        "deal_id,org_id,amount,currency,status,created_at,closed_at,updated_at\n"
        "w1,org_00001,10,USD,won,2026-02-01,2026-02-02,2026-02-02\n"
    )
    queued = instance.create_run_for_job(
        definitions.resolve_job_def("ingest_and_attribute"),
        tags=LANDING_RUN_TAG,
        status=dg.DagsterRunStatus.NOT_STARTED,  # QUEUED needs a daemon-side origin
    )
    try:
        waiting = landing_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert isinstance(waiting, dg.SkipReason) and "waiting to start" in waiting.skip_message
    finally:
        instance.delete_run(queued.run_id)
    started = landing_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(started, dg.RunRequest)
    assert started.tags["attribution/trigger"] == "landing"
    (env["landing"] / "deals_waiting.csv").unlink()


def test_won_deals_sensor_requests_attribution_and_advances(
    env: dict, instance: dg.DagsterInstance, definitions: dg.Definitions
) -> None:
    resources = {"database": PlatformDatabase(url=env["DATABASE_URL"])}
    (latest,) = fetch(env["DATABASE_URL"], "select max(batch_id) from raw.deals")[0]
    quiet = won_deals_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=str(latest))
    )
    assert isinstance(quiet, dg.SkipReason)
    # The newly won deal (deals_extra.csv) gets a touchpoint of a partner with a plan:
    # its commission line must appear with its attribution.
    (partner_id,) = fetch(
        env["DATABASE_URL"],
        "select partner_id from raw.partners where org_id = 'org_00001' order by partner_id limit 1",
    )[0]
    (env["landing"] / "touchpoints_extra.csv").write_text(
        "touchpoint_id,org_id,deal_id,partner_id,touchpoint_type,occurred_at\n"
        f"x1_t1,org_00001,x1,{partner_id},referral,2026-02-01T12:00:00Z\n"
    )
    (env["landing"] / "commission_plans_extra.csv").write_text(
        "plan_id,org_id,partner_id,attribution_model,rate,effective_from,holding_days,updated_at\n"
        f"x1_plan,org_00001,{partner_id},linear,0.1,2026-01-01,0,2026-01-01T00:00:00Z\n"
    )
    ingested = definitions.resolve_job_def("ingest").execute_in_process(instance=instance)
    assert ingested.success  # loads deals_extra.csv: a newly won deal
    context = dg.build_sensor_context(instance=instance, resources=resources, cursor=str(latest))
    request = won_deals_sensor(context)
    assert isinstance(request, dg.RunRequest)
    assert int(context.cursor) > latest
    pending = fetch(env["DATABASE_URL"], "select count(*) from marts.attribution_backlog")[0][0]
    assert pending == 1
    attributed = definitions.resolve_job_def("attribution").execute_in_process(instance=instance)
    assert attributed.success
    assert fetch(env["DATABASE_URL"], "select count(*) from marts.attribution_backlog") == [(0,)]
    built = {e.asset_key for e in attributed.get_asset_materialization_events()}
    assert dg.AssetKey(["marts", "fct_commission_lines"]) in built
    lines = fetch(
        env["DATABASE_URL"],
        "select line_type, period::text, amount_usd from marts.fct_commission_lines"
        " where deal_id = 'x1' and partner_id = %s",
        [partner_id],
    )
    assert lines == [("earned", "2026-02-01", Decimal("1.00"))]  # 10 % of 10 USD, no holding
    # Won deals the marts already reflect (as after `ingest_and_attribute`) start nothing.
    replay = won_deals_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=str(latest))
    )
    assert isinstance(replay, dg.SkipReason) and "already in the marts" in replay.skip_message
    after = won_deals_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=context.cursor)
    )
    assert isinstance(after, dg.SkipReason)


def test_a_landing_run_builds_the_won_deal_path_and_the_rest_catches_up(
    env: dict, instance: dg.DagsterInstance, definitions: dg.Definitions
) -> None:
    """`ingest_and_attribute` loads and builds only the models on the way to
    fct_partner_attribution, without data tests; marts_catch_up_sensor then starts
    `attribution` (when landing is quiet, or at the latest MARTS_CATCH_UP_SECONDS later),
    which brings the other marts level."""
    url = env["DATABASE_URL"]
    resources = {"database": PlatformDatabase(url=url)}
    (partner_id,) = fetch(
        url,
        "select partner_id from raw.partners where org_id = 'org_00002' order by partner_id limit 1",
    )[0]
    (env["landing"] / "touchpoints_catch_up.csv").write_text(
        "touchpoint_id,org_id,deal_id,partner_id,touchpoint_type,occurred_at\n"
        f"cu1_t1,org_00002,cu1,{partner_id},referral,2026-02-01T12:00:00Z\n"
    )
    (env["landing"] / "deals_catch_up.csv").write_text(
        "deal_id,org_id,amount,currency,status,created_at,closed_at,updated_at\n"
        "cu1,org_00002,250,USD,won,2026-02-01,2026-02-03,2026-02-03\n"
    )
    job = definitions.resolve_job_def("ingest_and_attribute")
    landed = job.execute_in_process(instance=instance)
    assert landed.success
    built = {e.asset_key.to_user_string() for e in landed.get_asset_materialization_events()}
    assert "marts/fct_partner_attribution" in built and "marts/fct_deals" in built
    assert not built & {"marts/partner_performance", "marts/org_daily_metrics",
                        "marts/fct_commission_lines", "marts/partner_statements"}  # fmt: skip
    # No data test, no quality check of a model: only the load's own (freshness of raw/deals).
    checked = {e.asset_key.path[0] for e in landed.get_asset_check_evaluations()}
    assert checked <= {"raw"}, checked
    assert (
        fetch(url, "select count(*) from marts.fct_partner_attribution where deal_id = 'cu1'")[0][0]
        > 0
    )
    touched = "select deals_won from marts.partner_performance where partner_id = %s"
    (won_before,) = fetch(url, touched, [partner_id])[0]

    # Right after a landing run: landing is busy, the marts only just fell behind.
    context = dg.build_sensor_context(instance=instance, resources=resources)
    waiting = marts_catch_up_sensor(context)
    assert isinstance(waiting, dg.SkipReason) and "landing is busy" in waiting.skip_message
    # Behind for longer than the bound: caught up however busy landing is.
    long_ago = str(float(context.cursor) - MARTS_CATCH_UP_SECONDS - 1)
    request = marts_catch_up_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=long_ago)
    )
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("marts-catch-up-")
    caught_up = definitions.resolve_job_def("attribution").execute_in_process(instance=instance)
    assert caught_up.success
    assert fetch(url, touched, [partner_id])[0][0] == won_before + 1
    level = marts_catch_up_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert isinstance(level, dg.SkipReason) and "every mart" in level.skip_message


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Receiver.received.clear()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def test_failed_error_check_alert_reaches_the_webhook(
    env: dict,
    instance: dg.DagsterInstance,
    definitions: dg.Definitions,
    receiver: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Break an invariant the credits check guards, then run the check for real.
    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as conn:
        conn.execute(
            "update marts.fct_partner_attribution set credit = credit * 2"
            " where deal_id = (select min(deal_id) from marts.fct_partner_attribution)"
        )
    check_keys = [
        dg.AssetCheckKey(
            dg.AssetKey(["marts", "fct_partner_attribution"]), "assert_credits_sum_to_one"
        )
    ]
    result = (
        definitions.get_implicit_global_asset_job_def()
        .get_subset(asset_check_selection=set(check_keys), asset_selection=set())
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    (evaluation,) = list(result.get_asset_check_evaluations())
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR

    monkeypatch.setenv("ALERT_WEBHOOK_URL", receiver)
    cursor = None
    context = dg.build_sensor_context(
        instance=instance, resources={"alert_webhook": AlertWebhook()}, cursor=cursor
    )
    failed_check_alert(context)
    texts = [message["text"] for message in _Receiver.received]
    assert any("assert_credits_sum_to_one" in text for text in texts), texts
    assert all(message.get("blocks") for message in _Receiver.received)


def _add_pending_won_deals(url: str, count: int, start: int) -> None:
    """Won deal versions the marts have not seen: as ingestion would leave them."""
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        (batch_id,) = conn.execute(
            "insert into raw.ingest_batches (file_name, file_path, entity, content_hash, file_size,"
            " started_at, finished_at, outcome) values (%s, %s, 'deals', %s, 0, now(), now(), 'loaded')"
            " returning batch_id",
            [f"deals_pending_{start}.csv", "/dev/null", f"hash-{start}"],
        ).fetchone()
        conn.execute(
            "insert into raw.deals (batch_id, line_no, deal_id, org_id, amount, currency, status,"
            " created_at, closed_at, updated_at)"
            " select %s, n, 'pending-' || n, 'org_00001', 100, 'USD', 'won',"
            " now() - interval '2 days', now() - interval '1 day', now()"
            " from generate_series(%s::int, %s::int) as n",
            [batch_id, start, start + count - 1],
        )


def test_backlog_check_at_500_501_and_1001_pending(env: dict) -> None:
    from orchestration.defs.attribution.checks import attribution_backlog_check

    database = PlatformDatabase(url=env["DATABASE_URL"])
    before = fetch(env["DATABASE_URL"], "select count(*) from marts.attribution_backlog")[0][0]
    assert before == 0
    outcomes = []
    for count, start in ((500, 1), (1, 501), (500, 502)):
        _add_pending_won_deals(env["DATABASE_URL"], count, start)
        outcomes.append(attribution_backlog_check(database=database))
    passed, warned, errored = outcomes
    assert passed.passed and passed.metadata["pending_won_deals"].value == 500
    assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    assert warned.metadata["pending_won_deals"].value == 501
    assert not errored.passed and errored.severity == dg.AssetCheckSeverity.ERROR
    assert errored.metadata["pending_won_deals"].value == 1001
    assert errored.metadata["oldest_pending_seconds"].value >= 0


def test_run_failure_alert_reaches_the_webhook(
    env: dict, instance: dg.DagsterInstance, receiver: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestration.defs.platform.alerts import run_failure_alert

    # A real failed run: the landing folder is gone.
    monkeypatch.setenv("LANDING_DIR", str(env["landing"] / "missing"))
    result = (
        load_defs()
        .resolve_job_def("ingest")
        .execute_in_process(instance=instance, raise_on_error=False)
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    monkeypatch.setenv("ALERT_WEBHOOK_URL", receiver)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=failure,
        resources={"alert_webhook": AlertWebhook()},
    ).for_run_failure()
    run_failure_alert(context)
    (message,) = _Receiver.received
    assert "Run failed: ingest" in message["text"] and result.run_id in message["text"]
    assert env["DATABASE_URL"].split("@")[0].split(":")[-1] not in json.dumps(message)


def test_housekeeping_deletes_runs_older_than_the_retention(
    env: dict, instance: dg.DagsterInstance, definitions: dg.Definitions
) -> None:
    before = len(instance.get_run_records())
    assert before >= 3
    job = definitions.resolve_job_def("dagster_housekeeping")
    kept = job.execute_in_process(instance=instance)  # default retention: 30 days
    assert kept.success and kept.output_for_node("delete_old_runs") == 0
    purged = job.execute_in_process(
        instance=instance,
        run_config={"ops": {"delete_old_runs": {"config": {"retention_days": 0}}}},
    )
    assert purged.success
    removed = purged.output_for_node("delete_old_runs")
    assert removed >= before  # every earlier run, the first housekeeping run included
    remaining = {r.dagster_run.run_id for r in instance.get_run_records()}
    assert remaining <= {purged.run_id}
