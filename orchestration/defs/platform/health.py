"""Platform health metrics (plotted by the UI over time) and housekeeping of Dagster's storage."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.resources import PlatformDatabase
from platform_core.database import connect

DEFAULT_RETENTION_DAYS = 30


@dg.asset(
    key=["monitoring", "platform_health"],
    group_name="monitoring",
    kinds={"python", "postgres"},
    owners=["team:data-platform"],
    deps=[dg.AssetKey(["marts", "dim_organizations"]), dg.AssetKey(["marts", "fct_deals"])],
    description="The product's health metrics as numeric metadata, so the UI plots them over time.",
)
def platform_health(context: dg.AssetExecutionContext, database: PlatformDatabase):
    with connect(database.url) as conn:
        row = conn.execute(
            """
            select
                (select count(*) from marts.dim_organizations where active_partner_count > 0),
                (select coalesce(avg(active_partner_count), 0)::float8 from marts.dim_organizations),
                (select count(*) from marts.fct_deals
                 where closed_date = (now() at time zone 'UTC')::date),
                (select count(*) from marts.attribution_backlog),
                (select count(*) from raw.quarantine where quarantined_at > now() - interval '24 hours')
            """
        ).fetchone()
    since = datetime.now(UTC) - timedelta(hours=24)
    failed_runs = len(
        context.instance.get_run_records(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE], updated_after=since)
        )
    )
    active_orgs, avg_partners, closed_today, backlog, quarantined = row
    return dg.MaterializeResult(
        metadata={
            "active_organizations": int(active_orgs),
            "avg_active_partners_per_organization": round(float(avg_partners), 2),
            "deals_closed_today": int(closed_today),
            "attribution_backlog": int(backlog),
            "quarantined_rows_24h": int(quarantined),
            "failed_runs_24h": failed_runs,
        }
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
