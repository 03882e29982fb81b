"""BI access to the marts: read-only role, index-backed dashboard queries (docs/contract.md §5)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest

from platform_core.bi_access import set_reader_password
from synthetic_crm import generate
from tests.dbt_harness import build, ingest

PASSWORD = "test-only-reader-password"


@pytest.fixture(scope="module")
def built(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    landing = tmp_path_factory.mktemp("landing")
    generate(landing, orgs=8, days=35, seed=3)
    ingest(db_url, landing)
    build(db_url, tmp_path_factory.mktemp("dbt"))
    set_reader_password(db_url, PASSWORD)
    return db_url


def as_reader(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(netloc=f"bi_reader:{quote(PASSWORD)}@{parts.hostname}:{parts.port}")
    )


def test_reader_reads_every_mart(built: str) -> None:
    with psycopg.connect(as_reader(built)) as conn:
        for table in ("fct_partner_attribution", "fct_deals", "partner_performance",
                      "org_daily_metrics", "dim_organizations", "attribution_backlog"):  # fmt: skip
            assert conn.execute(f"select count(*) from marts.{table}").fetchone()[0] >= 0  # noqa: S608


@pytest.mark.parametrize(
    "statement",
    [
        "select * from raw.deals limit 1",
        "select * from staging.stg_crm__deal_versions limit 1",
        "select * from intermediate.int_deals__current limit 1",
        "delete from marts.fct_deals",
        "insert into marts.dim_organizations (org_id) values ('x')",
        "create table public.sneaky (x int)",
        "create temporary table sneaky (x int)",
        "create table marts.sneaky (x int)",
        "grant select on raw.deals to bi_reader",
    ],
)
def test_reader_can_do_nothing_else(built: str, statement: str) -> None:
    with (
        psycopg.connect(as_reader(built)) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


def test_grants_survive_a_full_refresh(built: str, tmp_path: Path) -> None:
    build(built, tmp_path, full_refresh=True)
    with psycopg.connect(as_reader(built)) as conn:
        assert conn.execute("select count(*) from marts.fct_deals").fetchone()[0] > 0


DASHBOARD_QUERIES = {
    "one org's daily series": (
        "select * from marts.org_daily_metrics where org_id = %s"
        " and metric_date between '2026-01-01' and '2026-03-31' order by metric_date",
        "org_daily_metrics",
    ),
    "one org's partner leaderboard": (
        "select partner_id, partner_name, attributed_revenue_usd_linear from marts.partner_performance"
        " where org_id = %s order by attributed_revenue_usd_linear desc limit 20",
        "partner_performance",
    ),
    "one org's won deals by close date, keyset page": (
        "select deal_id, closed_at, amount_usd from marts.fct_deals where org_id = %s"
        " and status = 'won' and (closed_at, deal_id) < ('2026-12-31', 'zzz')"
        " order by closed_at desc, deal_id desc limit 50",
        "fct_deals",
    ),
    "one org's deals by close date": (
        "select deal_id, status, closed_at from marts.fct_deals where org_id = %s"
        " and closed_at >= '2026-01-15' order by closed_at, deal_id limit 50",
        "fct_deals",
    ),
    "one org's attribution rows for a model": (
        "select partner_id, sum(attributed_amount_usd) from marts.fct_partner_attribution"
        " where org_id = %s and attribution_model = 'linear' group by partner_id",
        "fct_partner_attribution",
    ),
    "one org's partner statements for a period": (
        "select partner_id, partner_name, total_usd from marts.partner_statements"
        " where org_id = %s and period = '2026-02-01' order by total_usd desc",
        "partner_statements",
    ),
    "one partner's commission history": (
        "select period, line_type, deal_id, amount_usd from marts.fct_commission_lines"
        " where org_id = %s and partner_id = 'ptn_0000001' order by period, deal_id",
        "fct_commission_lines",
    ),
    "one org's commission lines for a period": (
        "select partner_id, deal_id, amount_usd from marts.fct_commission_lines"
        " where org_id = %s and period = '2026-02-01' order by partner_id",
        "fct_commission_lines",
    ),
    "one org's channel weights for a month": (
        "select channel, weight from marts.attribution_channel_weights"
        " where org_id = %s and month = '2026-02-01' order by weight desc",
        "attribution_channel_weights",
    ),
}


@pytest.mark.parametrize("name", list(DASHBOARD_QUERIES))
def test_dashboard_queries_are_index_backed(built: str, name: str) -> None:
    query, table = DASHBOARD_QUERIES[name]
    with psycopg.connect(as_reader(built)) as conn:
        # The test data is small enough for a sequential scan to win on cost; forbid
        # it to see whether an index can answer the query at all.
        conn.execute("set enable_seqscan = off")
        plan = "\n".join(
            row[0] for row in conn.execute(f"explain {query}", ["org_00001"]).fetchall()
        )
    assert "Seq Scan" not in plan, plan
    assert f" on {table}" in plan and "Index" in plan, plan
