"""Closing commission periods (docs/commissions.md): the ledger as assets, the job
`close_commission_period` that `attribution commissions close` runs, and the
monthly schedule that closes the previous month for every organization.

The ledger tables (schema commissions) are the dbt sources commissions/closings
and commissions/ledger_lines; only this job writes them, so `daily_refresh`
(everything else) leaves them out. After recording, the job rebuilds
fct_commission_lines and partner_statements, whose lines of the closed months
then read "closed".
"""

import dagster as dg
from pydantic import Field

from commissions import CloseRefused, Period, close_period
from orchestration.resources import PlatformDatabase
from orchestration.retries import DATABASE_RETRY, classify

CLOSINGS_KEY = dg.AssetKey(["commissions", "closings"])
LEDGER_LINES_KEY = dg.AssetKey(["commissions", "ledger_lines"])
LEDGER_KEYS = (CLOSINGS_KEY, LEDGER_LINES_KEY)
CLOSE_OP = "commission_ledger"
CLOSE_JOB = "close_commission_period"
COMMISSION_MARTS = (
    dg.AssetKey(["marts", "fct_commission_lines"]),
    dg.AssetKey(["marts", "partner_statements"]),
)
# The 5th: four days for late data on the month's deals before their lines are final.
CLOSE_DAY_OF_MONTH = 5


class CloseConfig(dg.Config):
    """Run config of `commission_ledger`: which month, which organizations."""

    period: str = Field(
        description="The month to close, YYYY-MM (earlier open months close with it)."
    )
    org_ids: list[str] = Field(
        default_factory=list, description="The organizations; empty: every organization."
    )


def close_run_config(period: Period, org_ids: list[str] | None) -> dict[str, object]:
    return {"ops": {CLOSE_OP: {"config": {"period": str(period), "org_ids": org_ids or []}}}}


@dg.multi_asset(
    name=CLOSE_OP,
    specs=[
        dg.AssetSpec(
            CLOSINGS_KEY,
            group_name="commissions",
            description="One row per close of one organization's books (append-only).",
            deps=[dg.AssetKey(["intermediate", "int_commissions__due"])],
        ),
        dg.AssetSpec(
            LEDGER_LINES_KEY,
            group_name="commissions",
            description="The lines of closed periods as recorded (append-only).",
            deps=[dg.AssetKey(["intermediate", "int_commissions__due"])],
        ),
    ],
    pool="attribution_database",
    retry_policy=DATABASE_RETRY,
)
def commission_ledger(
    context: dg.AssetExecutionContext, database: PlatformDatabase, config: CloseConfig
):
    """Close the month for the organizations: record their open lines up to it. A
    refusal fails at once; a lost database is retried, and the retry skips the
    organizations the failed attempt had already closed (each closes in its own
    transaction)."""
    try:
        period = Period.parse(config.period)
        results = close_period(
            database.url, period, config.org_ids or None, resuming=context.retry_number > 0
        )
    except (CloseRefused, ValueError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except Exception as exc:
        raise classify(exc) from exc
    for result in results:
        context.log.info(result.line())
    closed = [r for r in results if r.closed]
    metadata = {
        "period": str(period),
        "organizations_closed": len(closed),
        "organizations_already_closed": len(results) - len(closed),
        "lines_recorded": sum(r.line_count for r in closed),
        "total_usd": float(sum(r.total_usd for r in closed)),
    }
    for key in LEDGER_KEYS:
        yield dg.MaterializeResult(asset_key=key, metadata=metadata)


close_commission_period_job = dg.define_asset_job(
    CLOSE_JOB,
    selection=dg.AssetSelection.assets(*LEDGER_KEYS, *COMMISSION_MARTS),
    description="Close a month's commissions (run config: period, org_ids), then rebuild"
    " fct_commission_lines and partner_statements.",
)


@dg.schedule(
    job=close_commission_period_job,
    cron_schedule=f"0 3 {CLOSE_DAY_OF_MONTH} * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
def monthly_commission_close(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    """On the 5th, close the previous month for every organization."""
    period = Period.of(context.scheduled_execution_time.date()).previous
    return dg.RunRequest(run_key=str(period), run_config=close_run_config(period, None))
