"""Tenant BI logins: the watchdog that holds them to their limits."""

import dagster as dg

from orchestration.resources import PlatformDatabase
from platform_core.bi_access import enforce_tenant_limits


@dg.sensor(
    name="tenant_session_watchdog",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Cancels organization-login statements that run past their login's statement_timeout"
        " and ends transactions left idle past its idle timeout, even when the session SET its"
        " own timeouts (docs/bi.md). Launches no runs."
    ),
)
def tenant_session_watchdog(context: dg.SensorEvaluationContext, database: PlatformDatabase):
    actions = enforce_tenant_limits(database.url)
    for action in actions:
        context.log.warning(f"tenant limit enforced: {action}")
    return dg.SkipReason(
        f"{len(actions)} tenant session(s) held to their limits" if actions else "all within limits"
    )
