"""The BI dashboard queries (docs/bi.md, docs/contract.md §5), as a BI tool sends them.

Declared once: the System Health panel's probe (orchestration/defs/platform/health.py)
and the benchmarks (latency, concurrent load, EXPLAIN plans) time these. Every query
is one organization's, with bind parameters; deal lists are keyset-paginated (the
next page starts after the last row seen, never OFFSET).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

PAGE_SIZE = 50  # the `limit` of the paginated deal lists below
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True)
class DashboardQuery:
    name: str
    table: str  # the mart it reads: its plan must use one of this table's indexes
    sql: str


DAILY_SERIES = DashboardQuery(
    "daily series",
    "org_daily_metrics",
    "select metric_date, deals_created, deals_won, deals_lost, revenue_won_usd,"
    " attributed_revenue_usd, partner_sourced_revenue_usd, touchpoints, top_partners"
    " from marts.org_daily_metrics"
    " where org_id = %(org_id)s and metric_date between %(date_from)s and %(date_to)s"
    " order by metric_date",
)
LEADERBOARD = DashboardQuery(
    "partner leaderboard",
    "partner_performance",
    "select partner_id, partner_name, partner_type, deals_won, win_rate,"
    " attributed_revenue_usd_linear, sourced_revenue_usd"
    " from marts.partner_performance where org_id = %(org_id)s"
    " order by attributed_revenue_usd_linear desc limit 20",
)
DEALS_BY_STATUS = DashboardQuery(
    "deals by status (keyset page)",
    "fct_deals",
    "select deal_id, deal_name, status, amount_usd, closed_at, sourced_partner_id"
    " from marts.fct_deals where org_id = %(org_id)s and status = %(status)s"
    " and (closed_at, deal_id) < (%(after_closed_at)s, %(after_deal_id)s)"
    " order by closed_at desc, deal_id desc limit 50",
)
DEALS_BY_CLOSE_DATE = DashboardQuery(
    "deals by close date (keyset page)",
    "fct_deals",
    "select deal_id, deal_name, status, amount_usd, closed_at"
    " from marts.fct_deals where org_id = %(org_id)s and closed_at >= %(date_from)s"
    " and (closed_at, deal_id) > (%(after_closed_at)s, %(after_deal_id)s)"
    " order by closed_at, deal_id limit 50",
)
QUERIES = (DAILY_SERIES, LEADERBOARD, DEALS_BY_STATUS, DEALS_BY_CLOSE_DATE)
