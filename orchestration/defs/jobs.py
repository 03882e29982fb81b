"""Jobs and the daily schedule (SPEC §6.4)."""

import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups("ingestion"),
    description="Load new and changed landing files into the raw tables.",
)

attribution_job = dg.define_asset_job(
    "attribution",
    selection=dg.AssetSelection.groups("staging", "attribution", "marts"),
    description="Build staging, attribution and the marts incrementally (dbt build).",
)

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
