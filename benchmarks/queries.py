"""Running the BI dashboard queries (platform_core/dashboard_queries.py) as a BI tool
would, for the latency stage (`bi_queries`), the concurrent load (`bi_load`) and
their EXPLAIN plans: `run_dashboard` fetches a first page, then the next page from
the last row seen (never OFFSET).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import psycopg

from platform_core.dashboard_queries import (  # noqa: F401 - re-exported
    DAILY_SERIES,
    DEALS_BY_CLOSE_DATE,
    DEALS_BY_STATUS,
    FAR_FUTURE,
    LEADERBOARD,
    PAGE_SIZE,
    QUERIES,
    DashboardQuery,
)


@dataclass(frozen=True)
class DataSpan:
    """The dates the marts cover, so the date filters select real data."""

    first: date
    last: date


def first_params(query: DashboardQuery, org_id: str, span: DataSpan, rng: random.Random) -> dict:
    """Parameters of a first page / first view, with random but realistic filters."""
    days = (span.last - span.first).days
    start = span.first + timedelta(days=rng.randint(0, max(0, days // 2)))
    params: dict[str, object] = {"org_id": org_id}
    if query is DAILY_SERIES:
        params |= {"date_from": start, "date_to": span.last}
    elif query is DEALS_BY_STATUS:
        status = rng.choice(["won", "lost"])
        params |= {"status": status, "after_closed_at": FAR_FUTURE, "after_deal_id": ""}
    elif query is DEALS_BY_CLOSE_DATE:
        at = datetime(start.year, start.month, start.day, tzinfo=UTC)
        params |= {"date_from": at, "after_closed_at": at, "after_deal_id": ""}
    return params


def execute(conn: psycopg.Connection, query: DashboardQuery, params: dict) -> tuple[float, list]:
    """(seconds, rows) of one query, rows fetched to the client as a BI tool would."""
    clock = time.perf_counter()
    rows = conn.execute(query.sql, params).fetchall()
    return time.perf_counter() - clock, rows


def run_dashboard(
    conn: psycopg.Connection, org_id: str, span: DataSpan, rng: random.Random
) -> list[tuple[str, float]]:
    """Every dashboard query for one org, plus the second page of each paginated list;
    returns (query name, seconds) pairs."""
    timings = []
    for query in QUERIES:
        params = first_params(query, org_id, span, rng)
        seconds, rows = execute(conn, query, params)
        timings.append((query.name, seconds))
        if query in (DEALS_BY_STATUS, DEALS_BY_CLOSE_DATE) and len(rows) == PAGE_SIZE:
            last = rows[-1]
            closed_at = last[4]
            params |= {"after_closed_at": closed_at, "after_deal_id": last[0]}
            seconds, _ = execute(conn, query, params)
            timings.append((f"{query.name}, next page", seconds))
    return timings


def data_span(conn: psycopg.Connection) -> DataSpan:
    first, last = conn.execute(
        "select min(metric_date), max(metric_date) from marts.org_daily_metrics"
    ).fetchone()
    today = date.today()
    return DataSpan(first or today, last or today)


def organizations(conn: psycopg.Connection) -> list[str]:
    return [row[0] for row in conn.execute("select org_id from marts.dim_organizations")]
