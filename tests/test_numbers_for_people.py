"""Numbers for people (docs/contract.md §5.7), on a demo-size database built by dbt.

Money in cents, credits and rates with at most 10 decimals, a deal's attributed
amounts adding up to its USD amount exactly, `computed_at` on every mart, every
mart column described (in dbt and in Dagster's column schema), asset
descriptions without dbt's SQL, and readable index names.

Checked elsewhere, where the builds they need already run: computed_at on an
incremental run (kept rows keep it, rewritten rows get the new build's) in
tests/test_dbt_changes.py; index names after full refreshes in
tests/test_dbt_attribution.py; the largest-remainder unit tests of
models/marts/_marts__models.yml (1/3 each of 100.00 is 33.34 / 33.33 / 33.33,
the cent to the smallest partner_id) by every `dbt build`, e.g.
tests/test_large_amounts.py's.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import dagster as dg
import psycopg
import pytest
import yaml
from psycopg import sql

from attribution.demo import DEMO_DAYS, DEMO_ORGS
from orchestration.dbt_invocation import DBT_PROJECT_DIR
from orchestration.dbt_project import TRANSLATOR
from synthetic_crm import generate
from tests.dbt_harness import assert_readable_index_names, dbt, ingest

# The demo's dataset (attribution/demo.py).
DEMO = {"preset": "mvp", "orgs": DEMO_ORGS, "days": DEMO_DAYS, "seed": 42}
# Numeric mart columns that are not USD amounts in cents.
RATIOS = {
    ("fct_partner_attribution", "credit"),
    ("partner_performance", "win_rate"),
    ("attribution_channel_weights", "removal_effect"),
    ("attribution_channel_weights", "weight"),
}
AS_LOADED = {("fct_deals", "amount")}  # the deal's own currency, exactly as loaded


@pytest.fixture(scope="module")
def built(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo's data, built by one `dbt run` (the cheapest build; the unit tests
    run with every `dbt build`, tests/test_large_amounts.py's among them)."""
    landing = tmp_path_factory.mktemp("landing")
    generate(landing, **DEMO)
    ingest(db_url, landing)
    target = tmp_path_factory.mktemp("dbt")
    started = _now(db_url)
    dbt(db_url, target, "run")
    return {
        "url": db_url,
        "manifest": json.loads((target / "target" / "manifest.json").read_text()),
        "started": started,
        "finished": _now(db_url),
    }


def _now(url: str) -> datetime:
    with psycopg.connect(url) as conn:
        return conn.execute("select now()").fetchone()[0]


def fetch(url: str, query: sql.Composable | str, params: object = None) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()


def mart_columns(url: str) -> dict[str, dict[str, str]]:
    """Every mart (table or view in schema marts) → its columns → data type."""
    out: dict[str, dict[str, str]] = {}
    for table, column, data_type in fetch(
        url,
        "select table_name, column_name, data_type from information_schema.columns"
        " where table_schema = 'marts' order by table_name, ordinal_position",
    ):
        out.setdefault(table, {})[column] = data_type
    return out


def mart_nodes(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        node["name"]: node
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["fqn"][1:2] == ["marts"]
    }


def test_every_mart_is_built_with_rows(built: dict[str, Any]) -> None:
    marts = mart_columns(built["url"])
    assert set(marts) == set(mart_nodes(built["manifest"]))
    for table in marts:
        if table != "attribution_backlog":  # nothing is pending right after a build
            query = sql.SQL("select count(*) from marts.{}").format(sql.Identifier(table))
            assert fetch(built["url"], query)[0][0] > 0, table


def test_money_is_in_cents_and_ratios_have_at_most_10_decimals(built: dict[str, Any]) -> None:
    """Every numeric mart column, read from the catalog (a new one must be classified)."""
    checked = []
    for table, columns in mart_columns(built["url"]).items():
        for column, data_type in columns.items():
            if data_type != "numeric" or (table, column) in AS_LOADED:
                continue
            query = sql.SQL(
                "select min(scale({c})), max(scale({c})), count({c}) from marts.{t}"
            ).format(c=sql.Identifier(column), t=sql.Identifier(table))
            low, high, values = fetch(built["url"], query)[0]
            assert values > 0, (table, column)  # something was checked
            if (table, column) in RATIOS:
                assert high <= 10, (table, column, high)
            else:  # cents, 0.00 included
                assert (low, high) == (2, 2), (table, column, low, high)
            checked.append((table, column))
    assert set(RATIOS) <= set(checked)
    assert ("partner_performance", "attributed_revenue_usd_linear") in checked


def test_top_partners_money_is_in_cents(built: dict[str, Any]) -> None:
    scales = fetch(
        built["url"],
        "select scale((p ->> 'attributed_revenue_usd')::numeric)"
        " from marts.org_daily_metrics, jsonb_array_elements(top_partners) as p",
    )
    assert scales and {s for (s,) in scales} == {2}
    # The five largest of a day are part of its attributed revenue.
    over = fetch(
        built["url"],
        "select org_id, metric_date from marts.org_daily_metrics as m"
        " where (select sum((p ->> 'attributed_revenue_usd')::numeric)"
        "        from jsonb_array_elements(m.top_partners) as p) > m.attributed_revenue_usd",
    )
    assert over == []


def test_a_deals_amounts_add_up_exactly_in_every_model(built: dict[str, Any]) -> None:
    url = built["url"]
    groups = fetch(
        url,
        "select a.deal_id, a.attribution_model, sum(a.attributed_amount_usd),"
        " max(a.deal_amount_usd), max(d.amount_usd), count(*)"
        " from marts.fct_partner_attribution as a join marts.fct_deals as d using (deal_id)"
        " group by 1, 2",
    )
    assert len(groups) > 100
    for deal_id, model, total, deal_amount, amount_usd, _ in groups:
        # deal_amount_usd is fct_deals.amount_usd, already in cents: round(x, 2) = x.
        assert total == deal_amount == amount_usd == round(amount_usd, 2), (deal_id, model)
    assert max(group[-1] for group in groups) >= 2  # some deals are split


def test_aggregates_add_up_the_rounded_amounts(built: dict[str, Any]) -> None:
    """The readers' sums: a partner's revenue per model and a day's attributed
    revenue are sums of the rounded per-deal amounts shown in fct_partner_attribution."""
    url = built["url"]
    models = [
        m
        for (m,) in fetch(
            url, "select distinct attribution_model from marts.fct_partner_attribution"
        )
    ]
    # Every model has its partner_performance column (and credits something here).
    per_model = {
        column.removeprefix("attributed_revenue_usd_")
        for column in mart_columns(url)["partner_performance"]
        if column.startswith("attributed_revenue_usd_")
    }
    assert sorted(models) == sorted(per_model) and len(models) >= 7
    for model in models:
        column = sql.Identifier(f"attributed_revenue_usd_{model}")
        query = sql.SQL(
            "select p.partner_id from marts.partner_performance as p"
            " where p.{c} <> coalesce((select sum(a.attributed_amount_usd)"
            " from marts.fct_partner_attribution as a"
            " where a.partner_id = p.partner_id and a.attribution_model = %s), 0)"
        ).format(c=column)
        assert fetch(url, query, [model]) == [], model
    days = fetch(
        url,
        "select m.org_id, m.metric_date from marts.org_daily_metrics as m"
        " where m.attributed_revenue_usd <> coalesce((select sum(a.attributed_amount_usd)"
        " from marts.fct_partner_attribution as a join marts.fct_deals as d using (deal_id)"
        " where d.org_id = m.org_id and d.closed_date = m.metric_date"
        " and a.attribution_model = %s), 0)",
        [default_model()],
    )
    assert days == []


def default_model() -> str:
    """dbt var default_attribution_model, the model org_daily_metrics reports."""
    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())
    return project["vars"]["default_attribution_model"]


def test_every_mart_has_computed_at(built: dict[str, Any]) -> None:
    url = built["url"]
    for table, columns in mart_columns(url).items():
        assert columns.get("computed_at") == "timestamp with time zone", table
        query = sql.SQL(
            "select count(*) filter (where computed_at is null), min(computed_at),"
            " max(computed_at) from marts.{}"
        ).format(sql.Identifier(table))
        nulls, first, last = fetch(url, query)[0]
        assert nulls == 0, table
        if table != "attribution_backlog":  # a view: its rows (none now) are computed when read
            assert built["started"] <= first <= last <= built["finished"], table


def test_every_mart_column_is_described(built: dict[str, Any]) -> None:
    nodes = mart_nodes(built["manifest"])
    for table, columns in mart_columns(built["url"]).items():
        described = nodes[table]["columns"]
        assert nodes[table]["description"].strip(), table
        for column in columns:
            assert column in described, (table, column)
            assert described[column]["description"].strip(), (table, column)


def test_dagster_shows_each_marts_columns_and_description(built: dict[str, Any]) -> None:
    from orchestration.defs.attribution.dbt_assets import dbt_models

    specs = {spec.key: spec for spec in dbt_models.specs}
    nodes = mart_nodes(built["manifest"])
    for table, columns in mart_columns(built["url"]).items():
        spec = specs[dg.AssetKey(["marts", table])]
        schema = spec.metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == list(columns), table
        assert all(c.description for c in schema.columns), table
        # The model's own description, without dagster-dbt's "Raw SQL" block.
        assert spec.description == nodes[table]["description"].strip(), table
        assert "Raw SQL" not in spec.description, table


def test_descriptions_of_sources_and_undescribed_nodes() -> None:
    table = {"resource_type": "source", "name": "deals", "description": "",
             "source_description": "CRM exports.\n"}  # fmt: skip
    assert TRANSLATOR.get_description(table) == "CRM exports."
    described = {**table, "description": "Deal versions."}
    assert TRANSLATOR.get_description(described) == "Deal versions."
    bare = {"resource_type": "model", "name": "m", "description": "", "raw_code": "select 1"}
    assert TRANSLATOR.get_description(bare) == "dbt model m"


def test_index_names_are_readable(built: dict[str, Any]) -> None:
    """After a first build (tests/test_dbt_attribution.py checks them after full
    refreshes too, where the old table's indexes are still there)."""
    names = assert_readable_index_names(built["url"])
    assert ("fct_deals", "fct_deals__org_id_status_closed_at_deal_id_idx") in names
    assert ("dim_organizations", "dim_organizations__org_id_idx") in names


def test_credit_decimals_in_the_marts(built: dict[str, Any]) -> None:
    """At most 10 decimals and no trailing zeros (0.5, not 0.5000000000)."""
    credits = fetch(built["url"], "select distinct credit::text from marts.fct_partner_attribution")
    assert credits
    for (text,) in credits:
        whole, _, decimals = text.partition(".")
        assert len(decimals) <= 10 and not decimals.endswith("0"), text
        assert Decimal(0) < Decimal(text) <= 1, text
