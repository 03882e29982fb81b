"""The System Health panel (`monitoring/platform_health`) and housekeeping of Dagster's storage.

platform_health measures six areas (orchestration/health_panel.py judges them and
renders the page): BI dashboard latency, capacity, business figures, the attribution
backlog, the run error rate and recent alerts. Each materialization carries the
numbers as metadata (the UI plots them) and the page as the Markdown entry
`system_health`.

It refreshes by Dagster's declarative automation every 10 minutes, and with
everything in `daily_refresh`; never inside the sensor-started jobs, and its runs
hold no slot of the database pool, so the landing → marts path never waits for it.
Not after every sensor-started run: a Dagster run of it costs ~10 s of CPU (a run
worker that loads the code location) for 0.3 s of queries,
which on the 2-core reference machine would compete with the next landing run
(docs/orchestration.md, "System health").
"""

import contextlib
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
from dagster._core.events import DagsterEventType

from orchestration.health_panel import (
    Alert,
    Alerts,
    Backlog,
    Business,
    Capacity,
    Errors,
    Panel,
    Performance,
    markdown_text,
)
from orchestration.resources import PlatformDatabase
from platform_core.dashboard_queries import DEALS_BY_CLOSE_DATE, FAR_FUTURE, QUERIES
from platform_core.database import connect, redact_secrets

DEFAULT_RETENTION_DAYS = 30

HEALTH_KEY = dg.AssetKey(["monitoring", "platform_health"])
REFRESH_CRON = "*/10 * * * *"
# What the panel reads that an asset stands for (lineage; and no refresh before they exist).
HEALTH_INPUTS = [
    dg.AssetKey(["marts", "dim_organizations"]),
    dg.AssetKey(["marts", "fct_deals"]),
    dg.AssetKey(["marts", "attribution_backlog"]),
    dg.AssetKey(["marts", "org_daily_metrics"]),
    dg.AssetKey(["marts", "partner_performance"]),
    dg.AssetKey(["raw", "quarantine"]),
]
# A 10-minute tick passed since the panel was last requested or refreshed: a tick
# while daily_refresh rebuilds the panel starts no second run; before its inputs were
# ever built it waits. It does not wait for builds: under a steady stream of landings
# it would never run, and it reads the marts without blocking them.
REFRESH_CONDITION = (
    dg.AutomationCondition.cron_tick_passed(REFRESH_CRON).since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.in_progress()
).with_label("every 10 minutes")

# The probe: every dashboard query for a few organizations, a few rounds, within a
# time budget; read-only, as bi_reader, each statement bounded.
PROBE_ORGANIZATIONS = 6  # the largest half of them, the rest spread over the others
PROBE_ROUNDS = 3
PROBE_BUDGET_SECONDS = 1.0
PROBE_STATEMENT_TIMEOUT = "2s"  # a dashboard query that slow is a FAIL anyway
PROBE_DAYS = 30
RECENT_ALERTS = 5
CHECK_EVALUATIONS_SCANNED = 2000


def _sample(org_ids: list[str], size: int) -> list[str]:
    """The largest organizations (first in `org_ids`) and some spread over the rest."""
    if len(org_ids) <= size:
        return org_ids
    largest = org_ids[: size // 2]
    rest = org_ids[size // 2 :]
    step = len(rest) / (size - len(largest))
    return largest + [rest[int(i * step)] for i in range(size - len(largest))]


def probe_dashboards(url: str) -> Performance:
    """Time each dashboard query for a sample of organizations, as bi_reader, read-only.

    Rounds go over every organization and query before repeating, so a budget that runs
    out still leaves each query measured; a statement past the timeout ends the probe
    and counts as a sample of that length."""
    latencies: dict[str, list[float]] = {query.name: [] for query in QUERIES}
    probe_started = time.monotonic()
    with connect(url, autocommit=True, application_name="platform_health probe") as conn:
        conn.read_only = True  # every transaction below starts READ ONLY
        org_ids = [
            row[0]
            for row in conn.execute(
                "select org_id from marts.dim_organizations"
                " order by active_partner_count desc, org_id"
            )
        ]
        (last_day,) = conn.execute(
            "select max(metric_date) from marts.org_daily_metrics"
        ).fetchone()
        role = "bi_reader"
        try:
            with conn.transaction():
                conn.execute("set local role bi_reader")
        except psycopg.errors.InsufficientPrivilege:  # not a member: measure as ourselves
            role = conn.info.parameter_status("session_authorization") or "the platform's role"
        sample = _sample(org_ids, PROBE_ORGANIZATIONS)
        last_day = last_day or datetime.now(UTC).date()
        first_day = last_day - timedelta(days=PROBE_DAYS)
        closed_from = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC)
        runs = [
            (query, org_id) for _ in range(PROBE_ROUNDS) for org_id in sample for query in QUERIES
        ]
        deadline = time.monotonic() + PROBE_BUDGET_SECONDS
        with conn.transaction(force_rollback=True):
            if role == "bi_reader":
                conn.execute("set local role bi_reader")
            conn.execute(
                "select set_config('statement_timeout', %s, true)", [PROBE_STATEMENT_TIMEOUT]
            )
            for query, org_id in runs:
                if time.monotonic() > deadline:
                    break
                # First pages: deals by close date start at the window's first day,
                # by status at the newest deal.
                by_date = query is DEALS_BY_CLOSE_DATE
                params = {
                    "org_id": org_id,
                    "date_from": closed_from if by_date else first_day,
                    "date_to": last_day,
                    "status": "won",
                    "after_closed_at": closed_from if by_date else FAR_FUTURE,
                    "after_deal_id": "",
                }
                name = query.name
                started = time.perf_counter()
                try:
                    conn.execute(query.sql, params).fetchall()
                except psycopg.errors.QueryCanceled:
                    latencies[name].append((time.perf_counter() - started) * 1000)
                    break
                latencies[name].append((time.perf_counter() - started) * 1000)
    return Performance(
        latencies_ms={name: values for name, values in latencies.items() if values},
        organizations=len(sample),
        role=role,
        probe_seconds=time.monotonic() - probe_started,
    )


def _statement_stats(conn: psycopg.Connection, perf: Performance) -> None:
    """Calls and mean time of the BI roles' statements, from pg_stat_statements when this
    database has the extension (a managed server may not): the probe covers seconds, this
    covers the real BI traffic since the statistics were last reset."""
    installed = conn.execute(
        "select 1 from pg_extension where extname = 'pg_stat_statements'"
    ).fetchone()
    if not installed:
        perf.statements_note = (
            "not installed in this database (`create extension pg_stat_statements`"
            " adds the BI roles' call counts and mean time here)"
        )
        return
    try:
        with conn.transaction():
            calls, mean_ms = conn.execute(
                "select coalesce(sum(calls), 0)::bigint,"
                " sum(total_exec_time) / nullif(sum(calls), 0)"
                " from pg_stat_statements"
                " where dbid = (select oid from pg_database where datname = current_database())"
                " and (userid = 'bi_reader'::regrole"
                "      or pg_has_role(userid, 'bi_org_reader', 'MEMBER'))"
            ).fetchone()
    except psycopg.Error as exc:  # e.g. the library is not preloaded on this server
        perf.statements_note = f"not readable here ({markdown_text(str(exc), 120)})"
        return
    perf.statement_calls = int(calls)
    perf.statement_mean_ms = None if mean_ms is None else float(mean_ms)


def _data_directory_disk(conn: psycopg.Connection) -> tuple[int | None, int | None, str]:
    """(free, total, why unknown) of the disk holding the server's data directory, when
    the server runs on this machine; a remote server's disk cannot be seen from here."""
    host = conn.info.host or ""
    local = host.startswith("/") or host in {"localhost", "127.0.0.1", "::1"}
    row = conn.execute("select setting from pg_settings where name = 'data_directory'").fetchone()
    if not local:
        return None, None, "the server is not on this machine"
    if row is None:
        return None, None, "this role may not read the data directory's path"
    directory = Path(row[0])
    if not directory.is_dir():
        return None, None, "the data directory is not on this machine's file system"
    with contextlib.suppress(OSError, IndexError):
        # A container's server behind a forwarded local port: its path may exist here
        # too, on another disk. postmaster.pid's fourth line is the server's port.
        if (directory / "postmaster.pid").read_text().splitlines()[3].strip() != str(
            conn.info.port
        ):
            return None, None, "the data directory here belongs to another server"
    usage = shutil.disk_usage(directory)
    return usage.free, usage.total, ""


def _measure_database(url: str) -> tuple[Capacity, Business, Backlog, int, Performance]:
    perf = probe_dashboards(url)
    with connect(url, application_name="platform_health") as conn:
        size, connections, max_connections = conn.execute(
            "select pg_database_size(current_database()),"
            " (select count(*) from pg_stat_activity where backend_type = 'client backend'),"
            " current_setting('max_connections')::int"
        ).fetchone()
        free, total, note = _data_directory_disk(conn)
        capacity = Capacity(size, connections, max_connections, free, total, note)
        orgs, active, avg_partners, max_partners, closed_today, today = conn.execute(
            "select count(*), count(*) filter (where active_partner_count > 0),"
            " coalesce(avg(active_partner_count), 0)::float8,"
            " coalesce(max(active_partner_count), 0),"
            " (select count(*) from marts.fct_deals"
            "  where closed_date = (now() at time zone 'UTC')::date),"
            " (now() at time zone 'UTC')::date"
            " from marts.dim_organizations"
        ).fetchone()
        business = Business(orgs, active, avg_partners, max_partners, closed_today, today)
        pending, oldest = conn.execute(
            "select count(*), extract(epoch from max(pending_for))::float8"
            " from marts.attribution_backlog"
        ).fetchone()
        (quarantined,) = conn.execute(
            "select count(*) from raw.quarantine where quarantined_at > now() - interval '24 hours'"
        ).fetchone()
        _statement_stats(conn, perf)
    return capacity, business, Backlog(pending, oldest), quarantined, perf


def is_health_refresh(run: dg.DagsterRun) -> bool:
    """A run of the panel alone (its automation's, or one started by hand): left out of
    the error rate, which is the pipeline's. A run launched for a selection records its
    assets; one executed in-process records only its steps."""
    if run.asset_selection:
        return set(run.asset_selection) == {HEALTH_KEY}
    return run.step_keys_to_execute is not None and set(run.step_keys_to_execute) == {
        platform_health.op.name
    }


def _run_name(run: dg.DagsterRun) -> str:
    if run.job_name.startswith("__ASSET_JOB") and run.asset_selection:
        keys = sorted(key.to_user_string() for key in run.asset_selection)
        return "materialize " + ", ".join(keys[:3]) + (" …" if len(keys) > 3 else "")
    return run.job_name


def _failure_text(instance: dg.DagsterInstance, run_id: str) -> str:
    """The first failed step's error, else the run's failure message."""
    for event_type in (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE):
        records = instance.get_records_for_run(
            run_id, of_type=event_type, ascending=True, limit=1
        ).records
        if not records:
            continue
        event = records[0].event_log_entry.dagster_event
        error = getattr(event.event_specific_data, "error", None)
        message = error.message if error is not None else event.message
        if message:
            return f"{event.step_key + ': ' if event.step_key else ''}{message}"
    return "see the run's logs"


def _runs_and_alerts(
    instance: dg.DagsterInstance, now: datetime, url: str
) -> tuple[Errors | None, Alerts]:
    since = now - timedelta(hours=24)
    finished = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
            updated_after=since,
        )
    )
    pipeline = [r for r in finished if not is_health_refresh(r.dagster_run)]
    failed_pipeline = sum(r.dagster_run.status == dg.DagsterRunStatus.FAILURE for r in pipeline)
    errors = Errors(runs=len(pipeline), failed=failed_pipeline, quarantined_rows=0)

    failed = sorted(
        (r for r in finished if r.dagster_run.status == dg.DagsterRunStatus.FAILURE),
        key=lambda r: r.update_timestamp,
        reverse=True,
    )
    alerts = Alerts(failed_run_count=len(failed))
    for record in failed[:RECENT_ALERTS]:
        run = record.dagster_run
        error = redact_secrets(_failure_text(instance, run.run_id), url)
        alerts.failed_runs.append(
            Alert(
                record.update_timestamp.astimezone(UTC),
                markdown_text(f"{_run_name(run)} · run {run.run_id[:8]} · {error}"),
            )
        )

    # As failed_check_alert reads them: check evaluations in the event log, newest first.
    records = instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(
            event_type=DagsterEventType.ASSET_CHECK_EVALUATION, after_timestamp=since.timestamp()
        ),
        ascending=False,
        limit=CHECK_EVALUATIONS_SCANNED,
    )
    latest_seen: set[tuple[dg.AssetKey, str]] = set()
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        key = (evaluation.asset_key, evaluation.check_name)
        latest = key not in latest_seen
        latest_seen.add(key)
        if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        label = f"{evaluation.asset_key.to_user_string()} · {evaluation.check_name}"
        alerts.failed_check_count += 1
        if latest:
            alerts.still_failing_checks.append(markdown_text(label))
        if len(alerts.failed_checks) < RECENT_ALERTS:
            when = datetime.fromtimestamp(record.timestamp, UTC)
            alerts.failed_checks.append(Alert(when, markdown_text(label)))
    return errors, alerts


@dg.asset(
    key=HEALTH_KEY,
    group_name="monitoring",
    kinds={"python", "postgres"},
    owners=["team:data-platform"],
    deps=HEALTH_INPUTS,
    automation_condition=REFRESH_CONDITION,
    description=(
        "The System Health panel: open the latest materialization's `system_health` entry"
        " (performance, capacity, business, backlog, error rate, recent alerts, each OK / WARN"
        " / FAIL); the other entries are its numbers, plotted over time. Refreshed every"
        " 10 minutes and by daily_refresh (docs/orchestration.md, System health)."
    ),
)
def platform_health(context: dg.AssetExecutionContext, database: PlatformDatabase):
    now = datetime.now(UTC)
    capacity, business, backlog, quarantined, performance = _measure_database(database.url)
    errors, alerts = _runs_and_alerts(context.instance, now, database.url)
    errors.quarantined_rows = quarantined
    panel = Panel(performance, capacity, business, backlog, errors, alerts, refreshed_at=now)
    context.log.info(f"system health: {panel.status().name}")
    return dg.MaterializeResult(
        metadata={**panel.metrics(), "system_health": dg.MetadataValue.md(panel.markdown())}
    )


# Evaluates the condition above (Dagster's asset daemon, part of `dagster dev` and
# `make dev`); on by default, as the other sensors.
platform_health_automation = dg.AutomationConditionSensorDefinition(
    "platform_health_automation",
    target=dg.AssetSelection.assets(HEALTH_KEY),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Refreshes monitoring/platform_health every 10 minutes (declarative automation).",
)


class HousekeepingConfig(dg.Config):
    retention_days: int = DEFAULT_RETENTION_DAYS


@dg.op(description="Deletes Dagster runs (and their event logs) older than the retention.")
def delete_old_runs(context: dg.OpExecutionContext, config: HousekeepingConfig) -> int:
    cutoff = datetime.now(UTC) - timedelta(days=config.retention_days)
    finished = [
        dg.DagsterRunStatus.SUCCESS,
        dg.DagsterRunStatus.FAILURE,
        dg.DagsterRunStatus.CANCELED,
    ]
    records = [
        record
        for record in context.instance.get_run_records(
            filters=dg.RunsFilter(created_before=cutoff, statuses=finished)
        )
        if record.dagster_run.run_id != context.run_id  # never this run, nor any still running
    ]
    for record in records:
        context.instance.delete_run(record.dagster_run.run_id)
    context.log.info(
        f"removed {len(records)} runs created before {cutoff:%Y-%m-%d %H:%M} UTC"
        f" (retention {config.retention_days} days)"
    )
    context.add_output_metadata({"runs_deleted": len(records), "cutoff": cutoff.isoformat()})
    return len(records)


@dg.job(description="Keeps Dagster's run history and event log to a retention window.")
def dagster_housekeeping():
    delete_old_runs()


housekeeping_schedule = dg.ScheduleDefinition(
    job=dagster_housekeeping,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
