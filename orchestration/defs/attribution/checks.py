"""Operational asset checks: attribution backlog, freshness and whether the marts were
built from the same changes.

The other checkers own the other rules (docs/data-quality.md): what the CRM sent,
great-expectations (`quality.py`); the models' invariants, the credits summing to
1 among them, dbt tests. No check here blocks: a failing check fails (and the run
exits 1), the assets after it are still built.
"""

from datetime import timedelta

import dagster as dg

from orchestration.resources import PlatformDatabase
from platform_core.database import connect

BACKLOG_WARN = 500
BACKLOG_ERROR = 1000
FRESHNESS = timedelta(hours=26)


def backlog_result(pending: int, oldest_seconds: float | None) -> dg.AssetCheckResult:
    """More than 500 pending won deals warns, more than 1000 is an error."""
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


# The incremental marts BI reads, each committed in its own transaction with its
# watermark (the change-log batch it has absorbed): equal watermarks mean the four
# were built from the same changes.
CONSISTENT_MARTS = (
    "fct_deals",
    "fct_partner_attribution",
    "partner_performance",
    "org_daily_metrics",
)


def consistency_result(watermarks: dict[str, tuple[int, float]]) -> dg.AssetCheckResult:
    """`watermarks`: mart → (change-log batch absorbed, seconds since it was saved)."""
    if not any(m in watermarks for m in CONSISTENT_MARTS):
        return dg.AssetCheckResult(passed=True, description="the marts are not built yet")
    batches = {m: watermarks[m][0] if m in watermarks else -1 for m in CONSISTENT_MARTS}
    newest = max(batches.values())
    behind = [m for m in CONSISTENT_MARTS if batches[m] < newest]
    ahead = [m for m in CONSISTENT_MARTS if batches[m] == newest]
    # How long the marts have been out of step: since the first of the newest was saved.
    since = max((watermarks[m][1] for m in ahead), default=0.0) if behind else 0.0
    if behind:
        description = (
            f"{', '.join(behind)} lag behind {', '.join(ahead)} (batch"
            f" {min(batches.values())} vs {newest}) for {since:.0f} s: a build failed after"
            " some marts were committed; the next successful run rolls them forward"
        )
    else:
        description = f"the marts were built from the same changes (batch {newest})"
    return dg.AssetCheckResult(
        passed=not behind,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            **{f"batch_{m}": batches[m] for m in CONSISTENT_MARTS},
            "marts_behind": ", ".join(behind) or "none",
            "behind_for_seconds": round(since, 1),
        },
        description=description,
    )


@dg.asset_check(
    asset=dg.AssetKey(["marts", "org_daily_metrics"]),
    name="marts_consistent",
    description=(
        "fct_deals, fct_partner_attribution, partner_performance and org_daily_metrics"
        " absorbed the same changes (a failed build can leave later marts behind until"
        " the next successful run)."
    ),
)
def marts_consistent_check(database: PlatformDatabase) -> dg.AssetCheckResult:
    with connect(database.url) as conn:
        exists = conn.execute("select to_regclass('intermediate.dbt_watermarks')").fetchone()[0]
        rows = (
            conn.execute(
                "select model, batch_id, extract(epoch from now() - saved_at)::float8"
                " from intermediate.dbt_watermarks where model = any(%s)",
                [list(CONSISTENT_MARTS)],
            ).fetchall()
            if exists
            else []
        )
    return consistency_result({model: (batch, age) for model, batch, age in rows})


# The backlog must be watched on its own: inside daily_refresh it runs right after
# the build (when the backlog is ~0) and is skipped when the build fails — exactly
# when attribution is stuck (and when the marts may be left inconsistent). This job
# evaluates only these checks, every 10 minutes.
backlog_watch_job = dg.define_asset_job(
    "backlog_watch",
    selection=dg.AssetSelection.checks(
        attribution_backlog_check, deals_freshness_check, marts_consistent_check
    ),
    description="Evaluate the backlog, freshness and consistency checks without building anything.",
)

backlog_watch_schedule = dg.ScheduleDefinition(
    job=backlog_watch_job,
    cron_schedule="*/10 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
