"""Spreadsheet formulas in the input: raw keeps them exactly, the marts show them inert.

A BI user exporting a mart to CSV and opening it in a spreadsheet must not run
`=HYPERLINK(...)` from a CRM export. Display text is neutralized in staging
(macro spreadsheet_safe: a leading single quote); identifiers that start like a
formula never get past ingestion (quarantined). Real ingestion, a real
`dbt build` (which also runs the macro's dbt unit test), real marts.
"""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from ingestion.contracts import FORMULA_PREFIXES
from tests.dbt_harness import dbt, ingest
from tests.ingest_helpers import fetch, write_jsonl

HYPERLINK = '=HYPERLINK("http://evil","click")'
WON = {"amount": "100", "currency": "USD", "status": "won", "created_at": "2026-03-01",
       "closed_at": "2026-03-05", "updated_at": "2026-03-05"}  # fmt: skip


@pytest.fixture(scope="module")
def built(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    landing = tmp_path_factory.mktemp("landing")
    write_jsonl(landing / "organizations.jsonl", [
        {"org_id": "o1", "name": HYPERLINK, "plan": "-2+3", "updated_at": "2026-01-01"},
        {"org_id": "o2", "name": "Plain = Org", "plan": "growth", "updated_at": "2026-01-01"},
    ])  # fmt: skip
    write_jsonl(landing / "partners.jsonl", [
        {"partner_id": "p1", "org_id": "o1", "name": "+cmd", "partner_type": "@SUM(A1)",
         "updated_at": "2026-01-01"},
        {"partner_id": "p2", "org_id": "o1", "name": "\tTab", "partner_type": "\rCR",
         "updated_at": "2026-01-01"},
        {"partner_id": "p3", "org_id": "o1", "name": "Safe - Partner", "partner_type": "reseller",
         "updated_at": "2026-01-01"},
        {"partner_id": "=p4", "org_id": "o1", "name": "Formula id", "updated_at": "2026-01-01"},
    ])  # fmt: skip
    write_jsonl(landing / "deals.jsonl", [
        {"deal_id": "d1", "org_id": "o1", "name": "@SUM(A1)", **WON},
        {"deal_id": "d2", "org_id": "o1", "name": "-5 discount", **WON},
        {"deal_id": "d3", "org_id": "o2", "name": "Normal deal", **WON},
        {"deal_id": "+d4", "org_id": "o1", "name": "Formula id", **WON},
    ])  # fmt: skip
    write_jsonl(landing / "touchpoints.jsonl", [
        {"touchpoint_id": f"t{i}", "org_id": "o1", "deal_id": deal, "partner_id": partner,
         "touchpoint_type": "demo", "occurred_at": "2026-03-02"}
        for i, (deal, partner) in enumerate([("d1", "p1"), ("d1", "p2"), ("d2", "p3"),
                                             ("d1", "=p4"), ("+d4", "p1")])
    ])  # fmt: skip
    ingest(db_url, landing)
    # Models and unit tests (the macro's among them); the data tests are other modules' job.
    dbt(db_url, tmp_path_factory.mktemp("dbt"), "build", "--exclude", "test_type:data")
    return db_url


def test_raw_keeps_the_text_exactly_as_read(built: str) -> None:
    assert fetch(built, "select name, plan from raw.organizations where org_id = 'o1'") == [
        (HYPERLINK, "-2+3")
    ]
    assert fetch(built, "select name, partner_type from raw.partners where partner_id = 'p2'") == [
        ("\tTab", "\rCR")
    ]


def test_formula_like_ids_are_quarantined_not_loaded(built: str) -> None:
    quarantined = fetch(built, "select entity, reason from raw.quarantine order by entity")
    assert [entity for entity, _ in quarantined] == [
        "deals",
        "partners",
        "touchpoints",
        "touchpoints",
    ]
    assert all("which a spreadsheet would run as a formula" in reason for _, reason in quarantined)


def test_display_text_reaches_the_marts_neutralized(built: str) -> None:
    orgs = dict(
        fetch(built, "select org_id, org_name || ' | ' || plan from marts.dim_organizations")
    )
    assert orgs == {"o1": "'" + HYPERLINK + " | '-2+3", "o2": "Plain = Org | growth"}
    partners = fetch(
        built,
        "select partner_id, partner_name, partner_type from marts.partner_performance"
        " order by partner_id",
    )
    assert partners == [
        ("p1", "'+cmd", "'@SUM(A1)"),
        ("p2", "'\tTab", "'\rCR"),
        ("p3", "Safe - Partner", "reseller"),
    ]
    deals = dict(fetch(built, "select deal_id, deal_name from marts.fct_deals"))
    assert deals == {"d1": "'@SUM(A1)", "d2": "'-5 discount", "d3": "Normal deal"}
    top = fetch(
        built,
        "select p->>'partner_name' from marts.org_daily_metrics,"
        " jsonb_array_elements(top_partners) as p where org_id = 'o1'",
    )
    assert sorted(name for (name,) in top) == ["'\tTab", "'+cmd", "Safe - Partner"]


def test_no_text_in_any_mart_starts_like_a_formula(built: str) -> None:
    """Every text column of every mart, every array element, every string inside JSON."""
    # Each column type as a set of strings: text itself, array elements, JSON string leaves.
    strings = {
        "text": sql.SQL("select {c} from marts.{t} where {c} is not null"),
        "ARRAY": sql.SQL("select e::text from marts.{t}, unnest({c}) as e where e is not null"),
        "jsonb": sql.SQL(
            "select v #>> '{{}}' from marts.{t}, jsonb_path_query({c}, 'strict $.**') as v"
            " where jsonb_typeof(v) = 'string'"
        ),
    }
    with psycopg.connect(built) as conn:
        columns = conn.execute(
            "select table_name, column_name, data_type from information_schema.columns"
            " where table_schema = 'marts' and data_type in ('text', 'jsonb', 'ARRAY')"
        ).fetchall()
        # No mart has an array column any more (bookkeeping moved to intermediate);
        # arrays stay covered should one come back.
        assert {"jsonb", "text"} <= {data_type for _, _, data_type in columns}
        checked = 0
        for table, column, data_type in columns:
            query = strings[data_type].format(c=sql.Identifier(column), t=sql.Identifier(table))
            values = conn.execute(query).fetchall()
            checked += len(values)
            bad = [v for (v,) in values if v.startswith(FORMULA_PREFIXES)]
            assert not bad, (table, column, bad)
        assert checked > 50
