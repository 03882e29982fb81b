"""Operational asset checks: attribution backlog, freshness and whether the marts were
built from the same changes.

The other checkers own the other rules (docs/data-quality.md): what the CRM sent,
great-expectations (`quality.py`); the models' invariants, the credits summing to
1 among them, dbt tests. No check here blocks: a failing check fails (and the run
exits 1), the assets after it are still built.

A check's metadata holds what it measured (counts, ages), plotted by Dagster over
time; its limits are in its description and result text.
"""

import warnings
from datetime import timedelta

import dagster as dg

# The backlog limits are declared once, with the System Health panel's other limits
# (the panel judges the backlog by the same numbers).
from orchestration.health_panel import BACKLOG_FAIL as BACKLOG_ERROR
from orchestration.health_panel import BACKLOG_WARN
from orchestration.resources import PlatformDatabase
from platform_core.database import connect

FRESHNESS = timedelta(hours=26)
RAW_DEALS = dg.AssetKey(["raw", "deals"])
FRESHNESS_SENSOR_INTERVAL_SECONDS = 600  # as often as backlog_watch


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def backlog_result(pending: int, oldest_seconds: float | None) -> dg.AssetCheckResult:
    """More than 500 pending won deals warns, more than 1000 is an error."""
    severity = (
        dg.AssetCheckSeverity.ERROR if pending > BACKLOG_ERROR else dg.AssetCheckSeverity.WARN
    )
    oldest = float(oldest_seconds or 0.0)
    waiting = f"; the oldest has waited {_duration(oldest)}" if pending else ""
    return dg.AssetCheckResult(
        passed=pending <= BACKLOG_WARN,
        severity=severity,
        metadata={"pending_won_deals": pending, "oldest_pending_seconds": oldest},
        description=f"{pending} won deals wait for attribution{waiting}"
        f" (warn above {BACKLOG_WARN}, error above {BACKLOG_ERROR})",
    )


@dg.asset_check(
    asset=dg.AssetKey(["marts", "attribution_backlog"]),
    name="backlog_within_limits",
    description=f"Won deals not yet reflected in the marts: warn above {BACKLOG_WARN},"
    f" error above {BACKLOG_ERROR}.",
)
def attribution_backlog_check(database: PlatformDatabase) -> dg.AssetCheckResult:
    with connect(database.url) as conn:
        pending, oldest = conn.execute(
            "select count(*), extract(epoch from max(pending_for))::float8"
            " from marts.attribution_backlog"
        ).fetchone()
    return backlog_result(pending, oldest)


# Deals freshness is Dagster's own check: it warns when the latest record of
# raw/deals says it was last updated more than 26 h ago. raw/deals is materialized
# by every load, with `dagster/last_updated_timestamp` = when deals rows were last
# loaded (defs/ingestion/assets.py), so a run without deals does not count. The
# check runs in every job that loads (daily_refresh included: `attribution run`
# lists it) and, through its sensor, when the last load turns 26 h old. These
# factories are marked superseded by FreshnessPolicy; it is kept because a
# FreshnessPolicy is no asset check (no result in a run, in `attribution run`'s
# summary or for the check alert) and reads only the time of the materialization.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    deals_freshness_checks = dg.build_last_update_freshness_checks(
        assets=[RAW_DEALS], lower_bound_delta=FRESHNESS
    )
    deals_freshness_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=deals_freshness_checks,
        minimum_interval_seconds=FRESHNESS_SENSOR_INTERVAL_SECONDS,
        name="deals_freshness_sensor",
        default_status=dg.DefaultSensorStatus.RUNNING,
    )


# The incremental marts BI reads, each committed in its own transaction with its
# watermark (the change-log batch it has absorbed): equal watermarks mean the four
# were built from the same changes.
CONSISTENT_MARTS = (
    "attribution_channel_weights",
    "fct_deals",
    "fct_partner_attribution",
    "partner_performance",
    "org_daily_metrics",
)


# Landing runs build only the way to fct_partner_attribution; the other marts catch up
# in an `attribution` run within MARTS_CATCH_UP_SECONDS (sensors.py). Marts out of step
# for less than this are a warning (catching up); longer, an error.
MARTS_CATCH_UP_GRACE_SECONDS = 900


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
    stuck = bool(behind) and since >= MARTS_CATCH_UP_GRACE_SECONDS
    if behind:
        description = (
            f"{', '.join(behind)} lag behind {', '.join(ahead)} (batch"
            f" {min(batches.values())} vs {newest}) for {since:.0f} s: "
            + (
                "longer than a catch-up takes — a build failed after some marts were"
                " committed; the next successful run rolls them forward"
                if stuck
                else f"a landing run built the way to fct_partner_attribution; the others"
                f" catch up within {MARTS_CATCH_UP_GRACE_SECONDS} s (or a build failed midway)"
            )
        )
    else:
        description = f"the marts were built from the same changes (batch {newest})"
    return dg.AssetCheckResult(
        passed=not behind,
        severity=dg.AssetCheckSeverity.ERROR if stuck else dg.AssetCheckSeverity.WARN,
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
        "attribution_channel_weights, fct_deals, fct_partner_attribution, partner_performance"
        " and org_daily_metrics absorbed the same changes (a failed build can leave later marts behind until"
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
# evaluates only these checks, every 10 minutes. (The freshness check has its own
# sensor, above.) A schedule rather than an automation condition: these checks
# wait for no upstream change, only for the clock, and a condition would need an
# automation sensor of its own declared running to do what the schedule does.
backlog_watch_job = dg.define_asset_job(
    "backlog_watch",
    selection=dg.AssetSelection.checks(attribution_backlog_check, marts_consistent_check),
    description="Evaluate the backlog and consistency checks without building anything.",
)

backlog_watch_schedule = dg.ScheduleDefinition(
    job=backlog_watch_job,
    cron_schedule="*/10 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
