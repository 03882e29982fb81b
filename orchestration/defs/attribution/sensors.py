"""The attribution sensors: `won_deals_sensor` starts `attribution` when won deal versions
arrive another way than through the landing sensor; `marts_catch_up_sensor` starts it
when landing runs have left the marts off their path behind."""

import time

import dagster as dg

from orchestration.defs.attribution.checks import MARTS_CATCH_UP_GRACE_SECONDS
from orchestration.defs.attribution.jobs import attribution_job
from orchestration.resources import PlatformDatabase
from platform_core.database import connect

# A won deal must reach fct_partner_attribution within 30 s at p95 (docs/contract.md §7);
# each tick is one cheap query on raw.deals.
WON_DEALS_SENSOR_INTERVAL_SECONDS = 5
# The other marts follow a landing run once landing has been quiet this long (a
# burst of files is absorbed by one catch-up run) …
CATCH_UP_QUIET_SECONDS = 60
# … and at the latest this long after they fell behind, however busy landing is: a
# catch-up run holds the build lock for its length, which a won deal landing then
# waits for, so it runs rarely under steady landing.
MARTS_CATCH_UP_SECONDS = 300
CATCH_UP_INTERVAL_SECONDS = 15
assert MARTS_CATCH_UP_SECONDS + 2 * CATCH_UP_QUIET_SECONDS < MARTS_CATCH_UP_GRACE_SECONDS


@dg.sensor(
    job=attribution_job,
    minimum_interval_seconds=WON_DEALS_SENSOR_INTERVAL_SECONDS,
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


# The models a landing run builds absorb the change log first; every other consumer
# of it has a lower watermark until an `attribution` (or daily) run.
MARTS_BEHIND = """
select lead.batch_id
from intermediate.dbt_watermarks as lead
where lead.model = 'fct_partner_attribution' and exists (
    select from intermediate.dbt_watermarks as behind
    where behind.batch_id < lead.batch_id and behind.model not like '%\\_\\_closings'
)
"""


@dg.sensor(
    job=attribution_job,
    minimum_interval_seconds=CATCH_UP_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts `attribution` when landing runs (which build only the way to"
    f" fct_partner_attribution) left the other marts behind: once landing has been quiet"
    f" for {CATCH_UP_QUIET_SECONDS} s, or {MARTS_CATCH_UP_SECONDS} s after they fell behind.",
)
def marts_catch_up_sensor(context: dg.SensorEvaluationContext, database: PlatformDatabase):
    if _build_under_way(context.instance):
        return dg.SkipReason("a build of the marts is queued or running")
    with connect(database.url) as conn:
        if not conn.execute("select to_regclass('intermediate.dbt_watermarks')").fetchone()[0]:
            return dg.SkipReason("nothing built yet")
        behind = conn.execute(MARTS_BEHIND).fetchone()
    if behind is None:
        context.update_cursor(None)
        return dg.SkipReason("every mart has absorbed what fct_partner_attribution has")
    (lead_batch,) = behind
    # The cursor: when this sensor first saw the marts behind (epoch seconds).
    behind_since = float(context.cursor or time.time())
    context.update_cursor(str(behind_since))
    behind_seconds = time.time() - behind_since
    quiet_seconds = _seconds_since_last_landing_run(context.instance)
    if quiet_seconds < CATCH_UP_QUIET_SECONDS and behind_seconds < MARTS_CATCH_UP_SECONDS:
        return dg.SkipReason(
            f"marts behind batch {lead_batch} for {behind_seconds:.0f} s; landing is busy"
            f" (last landing run {quiet_seconds:.0f} s ago)"
        )
    # One catch-up per state of the lead mart: a retried tick starts nothing twice.
    context.update_cursor(None)
    return dg.RunRequest(
        run_key=f"marts-catch-up-{lead_batch}", tags={"attribution/trigger": "catch-up"}
    )


def _seconds_since_last_landing_run(instance: dg.DagsterInstance) -> float:
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name="ingest_and_attribute"), limit=1
    )
    if not records:
        return float("inf")
    record = records[0]
    ended = record.end_time or record.start_time or record.create_timestamp.timestamp()
    return time.time() - ended


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
