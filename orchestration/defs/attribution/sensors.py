"""The won-deals sensor: starts `attribution` when won deal versions arrive."""

import dagster as dg

from orchestration.defs.attribution.jobs import attribution_job
from orchestration.resources import PlatformDatabase
from platform_core.database import connect

# A won deal must reach the marts within a minute (docs/contract.md §7); each tick is
# one cheap query on raw.deals.
PIPELINE_SENSOR_INTERVAL_SECONDS = 5


@dg.sensor(
    job=attribution_job,
    minimum_interval_seconds=PIPELINE_SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts `attribution` when won deal versions arrive in raw.deals.",
)
def won_deals_sensor(context: dg.SensorEvaluationContext, database: PlatformDatabase):
    last_batch = int(context.cursor or 0)
    with connect(database.url) as conn:
        newest, won = conn.execute(
            "select max(batch_id), count(*) filter (where status = 'won')"
            " from raw.deals where batch_id > %s",
            [last_batch],
        ).fetchone()
        if newest is None:
            return dg.SkipReason("no new deal batches")
        if won and _build_under_way(context.instance):
            # Look again when it has finished (the cursor stays): then the backlog says
            # whether that build took these deals in.
            return dg.SkipReason("a build of the marts is queued or running")
        pending = won
        if conn.execute("select to_regclass('marts.attribution_backlog')").fetchone()[0]:
            (pending,) = conn.execute("select count(*) from marts.attribution_backlog").fetchone()
    # The cursor is kept in Dagster's storage; the run key makes a retried tick harmless.
    context.update_cursor(str(newest))
    if not won:
        return dg.SkipReason(f"deal batches up to {newest} hold no won deals")
    if not pending:  # e.g. `ingest_and_attribute` loaded and attributed them in one run
        return dg.SkipReason(f"won deals up to batch {newest} are already in the marts")
    return dg.RunRequest(
        run_key=f"won-deals-through-batch-{newest}", tags={"won_deal_versions": str(won)}
    )


BUILD_JOBS = ("ingest_and_attribute", "attribution", "daily_refresh")
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _build_under_way(instance: dg.DagsterInstance) -> bool:
    return any(
        instance.get_runs(filters=dg.RunsFilter(job_name=job, statuses=UNFINISHED), limit=1)
        for job in BUILD_JOBS
    )
