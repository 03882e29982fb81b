"""`daily_refresh`, everything, and its schedule (01:00 UTC)."""

import dagster as dg

from orchestration.defs.commissions.closing import LEDGER_KEYS

daily_refresh_job = dg.define_asset_job(
    "daily_refresh",
    # Everything but the commission ledger, which only a close writes.
    selection=dg.AssetSelection.all() - dg.AssetSelection.assets(*LEDGER_KEYS),
    description="Everything but closing commissions: ingestion, every dbt model and test,"
    " checks, platform health.",
)

daily_refresh_schedule = dg.ScheduleDefinition(
    job=daily_refresh_job,
    cron_schedule="0 1 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
