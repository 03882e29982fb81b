"""`daily_refresh`, everything, and its schedule (01:00 UTC)."""

import dagster as dg

daily_refresh_job = dg.define_asset_job(
    "daily_refresh",
    selection=dg.AssetSelection.all(),
    description="Everything: ingestion, every dbt model and test, checks, platform health.",
)

daily_refresh_schedule = dg.ScheduleDefinition(
    job=daily_refresh_job,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
