"""Asset checks: attribution backlog, freshness and the credit invariants (SPEC §4.2, §4.6).

Data-quality expectations on the staging tables live in `quality.py` (great-expectations).
"""

from datetime import timedelta

import dagster as dg

from attribution.database import connect
from orchestration.resources import PlatformDatabase

BACKLOG_WARN = 500
BACKLOG_ERROR = 1000
FRESHNESS = timedelta(hours=26)


def backlog_result(pending: int, oldest_seconds: float | None) -> dg.AssetCheckResult:
    """SPEC §4.6: more than 500 pending won deals warns, more than 1000 is an error."""
    severity = (
        dg.AssetCheckSeverity.ERROR if pending > BACKLOG_ERROR else dg.AssetCheckSeverity.WARN
    )
    return dg.AssetCheckResult(
        passed=pending <= BACKLOG_WARN,
        severity=severity,
        metadata={
            "pending_won_deals": pending,
            "oldest_pending_seconds": float(oldest_seconds or 0.0),
            "warn_above": BACKLOG_WARN,
            "error_above": BACKLOG_ERROR,
        },
        description=f"{pending} won deals wait for attribution",
    )


@dg.asset_check(
    asset=dg.AssetKey(["marts", "attribution_backlog"]),
    name="backlog_within_limits",
    description="Won deals not yet reflected in the marts: warn above 500, error above 1000.",
)
def attribution_backlog_check(database: PlatformDatabase) -> dg.AssetCheckResult:
    with connect(database.url) as conn:
        pending, oldest = conn.execute(
            "select count(*), extract(epoch from max(pending_for))::float8"
            " from marts.attribution_backlog"
        ).fetchone()
    return backlog_result(pending, oldest)


@dg.asset_check(
    asset=dg.AssetKey(["raw", "deals"]),
    name="deals_loaded_recently",
    description="Warns when no deals batch was loaded in the last 26 hours.",
)
def deals_freshness_check(database: PlatformDatabase) -> dg.AssetCheckResult:
    with connect(database.url) as conn:
        (age,) = conn.execute(
            "select extract(epoch from now() - max(finished_at))::float8 from raw.ingest_batches"
            " where entity = 'deals' and outcome = 'loaded'"
        ).fetchone()
    fresh = age is not None and age <= FRESHNESS.total_seconds()
    return dg.AssetCheckResult(
        passed=fresh,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "hours_since_last_deals_batch": round(age / 3600, 2) if age is not None else -1.0
        },
    )


@dg.asset_check(
    asset=dg.AssetKey(["marts", "fct_partner_attribution"]),
    name="credits_sum_to_one",
    blocking=True,
    description="Per attributed deal and model, credits sum to 1 (±1e-9) and amounts to the deal's USD amount (±0.01).",
)
def credit_invariants_check(database: PlatformDatabase) -> dg.AssetCheckResult:
    with connect(database.url) as conn:
        bad_credit, bad_amount, groups = conn.execute(
            """
            select count(*) filter (where abs(total_credit - 1) > 1e-9),
                   count(*) filter (where abs(total_amount - deal_amount_usd) > 0.01),
                   count(*)
            from (
                select sum(credit) as total_credit, sum(attributed_amount_usd) as total_amount,
                       max(deal_amount_usd) as deal_amount_usd
                from marts.fct_partner_attribution
                group by deal_id, attribution_model
            ) as per_deal
            """
        ).fetchone()
    return dg.AssetCheckResult(
        passed=bad_credit == 0 and bad_amount == 0,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "deal_model_pairs": groups,
            "credit_sum_violations": bad_credit,
            "amount_sum_violations": bad_amount,
        },
    )


# The backlog must be watched on its own: inside daily_refresh it runs right after
# the build (when the backlog is ~0) and is skipped when the build fails — exactly
# when attribution is stuck. This job evaluates only the check, every 10 minutes.
backlog_watch_job = dg.define_asset_job(
    "backlog_watch",
    selection=dg.AssetSelection.checks(attribution_backlog_check, deals_freshness_check),
    description="Evaluate the backlog and freshness checks without building anything.",
)

backlog_watch_schedule = dg.ScheduleDefinition(
    job=backlog_watch_job,
    cron_schedule="*/10 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
