"""Tenant isolation for BI: a per-organization login reads its rows and nothing else.

The login is made with the real command (`attribution bi grant-org`); the tests
then try to escape as that login: other org ids, SET ROLE, set_config, functions,
views, policies, and the rebuilds (incremental and --full-refresh) that could
silently drop the policies.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql

from platform_core.bi_access import AccessError, grant_org
from synthetic_crm import generate
from tests.dbt_harness import build, ingest
from tests.ingest_helpers import good_deal, write_csv

PASSWORD = "org-login-test-password"
ORG, OTHER = "org_00001", "org_00002"
ROLE = "acme_bi"
# Every mart with its org column; all of them carry org_id (docs/contract.md §5).
MARTS = (
    "fct_partner_attribution",
    "fct_deals",
    "partner_performance",
    "org_daily_metrics",
    "dim_organizations",
    "attribution_backlog",
)


def login_url(url: str, role: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(
        parts._replace(netloc=f"{role}:{quote(PASSWORD)}@{parts.hostname}:{parts.port}")
    )


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DATABASE_URL=url, BI_ORG_PASSWORD=PASSWORD)
    return subprocess.run(
        [sys.executable, "-m", "attribution.cli", *args], env=env, capture_output=True, text=True
    )


def cross_org_input(landing: Path, url: str) -> None:
    """Touchpoints that claim another organization's partner on a deal (docs/contract.md §4.1 says no credit)."""
    with psycopg.connect(url) as conn:
        deal_id, deal_org = conn.execute(
            "select deal_id, org_id from raw.deals where status = 'won' and org_id = %s limit 1",
            [ORG],
        ).fetchone()
        foreign_partner = conn.execute(
            "select partner_id from raw.partners where org_id = %s limit 1", [OTHER]
        ).fetchone()[0]
    write_csv(
        landing / "touchpoints_cross_org.csv",
        [
            # The deal's org, another org's partner.
            {"touchpoint_id": "x1", "org_id": deal_org, "deal_id": deal_id,
             "partner_id": foreign_partner, "touchpoint_type": "referral",
             "occurred_at": "2026-01-02T00:00:00Z"},
            # Another org claimed on the row itself.
            {"touchpoint_id": "x2", "org_id": OTHER, "deal_id": deal_id,
             "partner_id": foreign_partner, "touchpoint_type": "referral",
             "occurred_at": "2026-01-02T00:00:00Z"},
        ],
    )  # fmt: skip


@pytest.fixture(scope="module")
def built(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    landing = tmp_path_factory.mktemp("landing")
    generate(landing, orgs=4, days=25, seed=11)
    ingest(db_url, landing)
    cross_org_input(landing, db_url)
    ingest(db_url, landing)
    build(db_url, tmp_path_factory.mktemp("dbt"))
    result = cli(db_url, "bi", "grant-org", ORG, "--role", ROLE)
    assert result.returncode == 0, result.stderr
    assert ROLE in result.stdout and PASSWORD not in result.stdout + result.stderr
    return db_url


def counts_by_org(url: str, table: str) -> dict[str, int]:
    query = sql.SQL("select org_id, count(*) from marts.{} group by org_id").format(
        sql.Identifier(table)
    )
    with psycopg.connect(url) as conn:
        return dict(conn.execute(query).fetchall())


def visible_orgs(conn: psycopg.Connection, table: str) -> dict[str, int]:
    query = sql.SQL("select org_id, count(*) from marts.{} group by org_id").format(
        sql.Identifier(table)
    )
    return dict(conn.execute(query).fetchall())


def test_data_spans_several_organizations(built: str) -> None:
    for table in MARTS[:-1]:
        assert len(counts_by_org(built, table)) >= 2, table


@pytest.mark.parametrize("table", MARTS)
def test_login_reads_only_its_organization(built: str, table: str) -> None:
    everything = counts_by_org(built, table)
    with psycopg.connect(login_url(built, ROLE)) as conn:
        seen = visible_orgs(conn, table)
        assert set(seen) <= {ORG}
        assert seen.get(ORG, 0) == everything.get(ORG, 0)
        # Asking for another organization by name returns nothing.
        other = conn.execute(
            sql.SQL("select count(*) from marts.{} where org_id = %s").format(
                sql.Identifier(table)
            ),
            [OTHER],
        ).fetchone()[0]
        assert other == 0


def test_backlog_view_is_filtered(built: str, tmp_path: Path) -> None:
    # A pending won deal in each organization: loaded after the marts were built.
    write_csv(
        tmp_path / "deals_pending.csv",
        [good_deal(deal_id=f"pending_{org}", org_id=org) for org in (ORG, OTHER)],
    )
    ingest(built, tmp_path)
    assert set(counts_by_org(built, "attribution_backlog")) == {ORG, OTHER}
    with psycopg.connect(login_url(built, ROLE)) as conn:
        assert set(visible_orgs(conn, "attribution_backlog")) == {ORG}


@pytest.mark.parametrize(
    "escape",
    [
        "set role bi_org_reader",
        "select set_config('app.org_id', 'org_00002', false)",
        "set session authorization postgres",
        "set role bi_reader",
        "set row_security = off",
    ],
)
def test_session_settings_do_not_widen(built: str, escape: str) -> None:
    with psycopg.connect(login_url(built, ROLE), autocommit=True) as conn:
        # Refused outright is fine; what matters is what is visible next.
        with contextlib.suppress(psycopg.Error):
            conn.execute(escape)
        for table in MARTS:
            try:
                seen = visible_orgs(conn, table)
            except psycopg.errors.InsufficientPrivilege:
                continue  # e.g. row_security = off: the query is refused, not widened
            assert set(seen) <= {ORG}, (escape, table)


@pytest.mark.parametrize(
    "statement",
    [
        "select * from security.bi_org_grants",
        "insert into security.bi_org_grants values ('acme_bi', 'org_00002')",
        "select * from raw.deals limit 1",
        "select * from raw.quarantine limit 1",
        "select * from staging.stg_crm__deal_versions limit 1",
        "select * from intermediate.int_deals__current limit 1",
        "alter table marts.fct_deals disable row level security",
        "drop policy bi_org_reader_own_orgs on marts.fct_deals",
        "create policy mine on marts.fct_deals for select using (true)",
        "create view marts.all_deals as select * from marts.fct_deals",
        "create function pg_temp.f() returns int language sql as 'select 1'",
        "create temporary table t (x int)",
        "grant bi_reader to acme_bi",
        "delete from marts.fct_deals",
        "update marts.fct_deals set org_id = 'org_00001'",
    ],
)
def test_login_cannot_reach_around(built: str, statement: str) -> None:
    with (
        psycopg.connect(login_url(built, ROLE)) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(statement)


def test_scope_function_reveals_only_its_own(built: str) -> None:
    with psycopg.connect(login_url(built, ROLE)) as conn:
        assert conn.execute("select security.visible_org_ids()").fetchone()[0] == [ORG]
        assert conn.execute("select security.org_readable(%s)", [OTHER]).fetchone()[0] is False


def test_errors_in_predicates_cannot_probe_other_rows(built: str) -> None:
    """A predicate that would fail on another org's row never sees that row (security barrier)."""
    with psycopg.connect(login_url(built, ROLE)) as conn:
        for table in MARTS:
            query = sql.SQL(
                "select count(*) from marts.{} where 1 / (case when org_id = %s then 1 else 0 end) = 1"
            ).format(sql.Identifier(table))
            assert conn.execute(query, [ORG]).fetchone()[0] >= 0


def test_policies_survive_incremental_and_full_refresh(built: str, tmp_path: Path) -> None:
    for full_refresh in (False, True):
        build(built, tmp_path, full_refresh=full_refresh)
        with psycopg.connect(login_url(built, ROLE)) as conn:
            for table in MARTS:
                assert set(visible_orgs(conn, table)) <= {ORG}, (full_refresh, table)
            assert visible_orgs(conn, "fct_deals").get(ORG, 0) > 0
        with psycopg.connect(built) as conn:
            unprotected = conn.execute(
                """
                select c.relname from pg_class as c
                join pg_namespace as n on n.oid = c.relnamespace
                where n.nspname = 'marts' and c.relkind = 'r'
                  and (not c.relrowsecurity or (
                      select count(*) from pg_policy as p where p.polrelid = c.oid) <> 2)
                """
            ).fetchall()
        assert unprotected == [], full_refresh


def test_global_reader_still_reads_everything(built: str) -> None:
    with psycopg.connect(built, autocommit=True) as conn:
        conn.execute(
            sql.SQL("alter role bi_reader with login password {}").format(sql.Literal(PASSWORD))
        )
    with psycopg.connect(login_url(built, "bi_reader")) as conn:
        for table in MARTS[:-1]:
            assert visible_orgs(conn, table) == counts_by_org(built, table), table


def test_no_cross_organization_credit(built: str) -> None:
    with psycopg.connect(built) as conn:
        wrong = conn.execute(
            """
            select a.deal_id, a.partner_id from marts.fct_partner_attribution as a
            join marts.fct_deals as d on d.deal_id = a.deal_id
            join marts.partner_performance as p on p.partner_id = a.partner_id
            where a.org_id <> d.org_id or p.org_id <> d.org_id
            """
        ).fetchall()
        injected = conn.execute(
            "select count(*) from raw.touchpoints where touchpoint_id in ('x1', 'x2')"
        ).fetchone()[0]
        credited = conn.execute(
            """
            select count(*) from intermediate.int_attribution__eligible_touchpoints
            where touchpoint_id in ('x1', 'x2')
            """
        ).fetchone()[0]
    assert injected == 2  # the input really says it
    assert credited == 0 and wrong == []


def test_second_org_and_revoke(built: str) -> None:
    assert cli(built, "bi", "grant-org", OTHER, "--role", ROLE).returncode == 0
    with psycopg.connect(login_url(built, ROLE)) as conn:
        assert set(visible_orgs(conn, "fct_deals")) == {ORG, OTHER}
    for org in (OTHER, ORG):
        assert cli(built, "bi", "revoke-org", org, "--role", ROLE).returncode == 0
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(login_url(built, ROLE)).close()  # no organization left: no login
    assert cli(built, "bi", "grant-org", ORG, "--role", ROLE).returncode == 0


@pytest.mark.parametrize(
    "role",
    ["bi_reader", "postgres", "Robert'); drop table raw.deals;--", "pg_monitor", "x"],
)
def test_unsafe_role_names_are_refused(built: str, role: str) -> None:
    with pytest.raises(AccessError):
        grant_org(built, ORG, role, PASSWORD)


def test_existing_privileged_role_is_not_turned_into_a_tenant(built: str) -> None:
    with psycopg.connect(built, autocommit=True) as conn:
        conn.execute("drop role if exists ops_admin")
        conn.execute("create role ops_admin login createdb")
    with pytest.raises(AccessError):
        grant_org(built, ORG, "ops_admin", PASSWORD)
    result = cli(built, "bi", "grant-org", ORG, "--role", "ops_admin")
    assert result.returncode == 2 and "not an organization BI login" in result.stderr
