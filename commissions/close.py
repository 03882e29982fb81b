"""Closing commission periods (docs/commissions.md, "Closing a period").

`close_period` closes a month for some organizations (each tenant closes its own
books) and, with it, every earlier month still open for them: the open lines of
those months (the view intermediate.int_commissions__open_lines, read against the
ledger as it is at that instant) are recorded in the append-only ledger
(schema commissions, migration 0007) with one `closings` row holding their count,
total and digest. One transaction per organization, under the commission close
lock: a close that is killed leaves nothing of that organization's close behind,
and two closes of the same month cannot both record it (the second finds it
closed and refuses).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg

from commissions.periods import Period
from platform_core.database import connect
from platform_core.locks import COMMISSION_CLOSE, acquire


class CloseRefused(Exception):
    """A close that must not happen; the message is one line for the operator."""


@dataclass(frozen=True)
class OrgClose:
    """What closing did for one organization."""

    org_id: str
    closed: bool  # False: the month was already closed for it
    first_period: date | None = None
    period: date | None = None
    line_count: int = 0
    total_usd: Decimal = Decimal(0)
    closing_id: int | None = None

    def line(self) -> str:
        if not self.closed:
            return f"{self.org_id}: already closed up to {self.period:%Y-%m}, nothing recorded"
        months = (
            f"{self.first_period:%Y-%m}"
            if self.first_period == self.period
            else f"{self.first_period:%Y-%m} to {self.period:%Y-%m}"
        )
        return (
            f"{self.org_id}: closed {months}: {self.line_count:,} lines,"
            f" USD {self.total_usd:,.2f} (closing {self.closing_id})"
        )


# One statement, so the lines counted, summed and digested are exactly the lines
# recorded (a dbt build may replace int_commissions__due between two statements).
_RECORD = """
with lines as materialized (
    select org_id, period, deal_id, partner_id, line_type, plan_id, attribution_model,
           amount_usd, deal_closed_at
    from intermediate.int_commissions__open_lines
    where org_id = %(org_id)s and period <= %(period)s
),
closing as (
    insert into commissions.closings
        (org_id, first_period, period, line_count, total_usd, lines_digest)
    select
        %(org_id)s,
        coalesce(%(first_period)s::date, least(min(lines.period), %(period)s::date)),
        %(period)s,
        count(*),
        coalesce(sum(lines.amount_usd), 0),
        commissions.lines_digest(coalesce(array_agg(
            row(null, lines.org_id, lines.period, lines.deal_id, lines.partner_id, lines.line_type,
                lines.plan_id, lines.attribution_model, lines.amount_usd, lines.deal_closed_at
            )::commissions.ledger_lines), '{}'))
    from lines
    returning closing_id, first_period, line_count, total_usd
),
recorded as (
    insert into commissions.ledger_lines
        (closing_id, org_id, period, deal_id, partner_id, line_type, plan_id, attribution_model,
         amount_usd, deal_closed_at)
    select closing.closing_id, lines.*
    from lines cross join closing
)
select closing_id, first_period, line_count, total_usd from closing
"""


def organizations_to_close(url: str, org_ids: Sequence[str] | None) -> list[str]:
    """The organizations a close applies to: those named (each must exist), or every
    organization loaded (None)."""
    with connect(url) as conn:
        known = {
            org for (org,) in conn.execute("select org_id from staging.stg_crm__organizations")
        }
    if org_ids is None:
        return sorted(known)
    unknown = sorted(set(org_ids) - known)
    if unknown:
        raise CloseRefused(f"unknown organization {unknown[0]!r}: no such org_id has been loaded")
    return sorted(set(org_ids))


def check_close(
    url: str,
    period: Period,
    org_ids: Sequence[str] | None,
    now: datetime | None = None,
    resuming: bool = False,
) -> list[str]:
    """The organizations a close of `period` would record, or CloseRefused with the
    one line to show: a month that has not ended, an unknown organization, a month
    already closed for a named organization (or for every one, with `--all`).
    `resuming` (a retry of a close that failed part-way): the named organizations
    an earlier attempt closed are skipped like `--all` skips them."""
    now = now or datetime.now(UTC)
    if period.ends_at > now:
        raise CloseRefused(
            f"{period} has not ended: it can be closed from {period.ends_at:%Y-%m-%d %H:%M} UTC"
        )
    orgs = organizations_to_close(url, org_ids)
    with connect(url) as conn:
        closed_to = dict(
            conn.execute(
                "select org_id, max(period) from commissions.closings"
                " where org_id = any(%s) group by org_id",
                [orgs],
            ).fetchall()
        )
    already = [org for org in orgs if closed_to.get(org) and closed_to[org] >= period.first_day]
    if already and ((org_ids is not None and not resuming) or len(already) == len(orgs)):
        who = already[0] if org_ids is not None else "every organization"
        raise CloseRefused(
            f"{period} is already closed for {who} (closed up to {closed_to[already[0]]:%Y-%m})"
        )
    return [org for org in orgs if org not in already]


def close_period(
    url: str,
    period: Period,
    org_ids: Sequence[str] | None,
    now: datetime | None = None,
    resuming: bool = False,
) -> list[OrgClose]:
    """Close `period` (and every earlier open month) for `org_ids` (None: all); what
    `check_close` refuses is refused. With `--all`, organizations that already closed
    the month are skipped. Each organization is re-checked under the lock, so of two
    closes at once one records and the other finds the month closed (and refuses)."""
    orgs = check_close(url, period, org_ids, now, resuming)
    # One connection, one transaction per organization (a new connection each cost
    # about as much as the close itself).
    with connect(url) as conn:
        results = [_close_one(conn, org, period) for org in orgs]
    raced = [r for r in results if not r.closed]
    if raced and len(raced) == len(results):
        raise CloseRefused(
            f"{period} is already closed for {raced[0].org_id} (closed up to"
            f" {raced[0].period:%Y-%m}): another close recorded it first"
        )
    return results


def _close_one(conn: psycopg.Connection, org_id: str, period: Period) -> OrgClose:
    with conn.transaction():
        acquire(conn, COMMISSION_CLOSE, "transaction")
        (last,) = conn.execute(
            "select max(period) from commissions.closings where org_id = %s", [org_id]
        ).fetchone()
        if last is not None and last >= period.first_day:
            return OrgClose(org_id, closed=False, period=last)
        first = Period(last).next.first_day if last is not None else None
        closing_id, first_period, count, total = conn.execute(
            _RECORD, {"org_id": org_id, "period": period.first_day, "first_period": first}
        ).fetchone()
    return OrgClose(org_id, True, first_period, period.first_day, count, total, closing_id)
