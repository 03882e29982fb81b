"""Data-quality expectations run with great-expectations 1.x, in the database.

GX validates through its SQL execution engine: aggregate queries run in
PostgreSQL, no table is pulled into pandas. Each expectation becomes one Dagster
asset check (see defs/quality.py); the list below is the whole policy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.data_context.types.base import ProgressBarsConfig

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


@dataclass(frozen=True)
class Expectation:
    name: str
    expectation: gxe.Expectation
    error: bool  # ERROR severity (a broken pipeline) rather than WARN (data to look at)
    description: str


def _rows(name: str, sql: str, description: str, error: bool = False) -> Expectation:
    return Expectation(
        name, gxe.UnexpectedRowsExpectation(unexpected_rows_query=sql), error, description
    )


# (schema, table) → expectations
EXPECTATIONS: dict[tuple[str, str], list[Expectation]] = {
    ("staging", "stg_crm__deals"): [
        Expectation("gx_deal_id_not_null", gxe.ExpectColumnValuesToNotBeNull(column="deal_id"), True, "Every deal has an id."),
        Expectation("gx_deal_id_unique", gxe.ExpectColumnValuesToBeUnique(column="deal_id"), True, "One current version per deal."),
        Expectation("gx_deal_status_valid", gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["open", "won", "lost"]), True, "Status is open, won or lost."),
        Expectation("gx_deal_amount_non_negative", gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0), True, "Amounts are >= 0."),
        _rows("gx_closed_deals_have_closed_at",
              "select * from {batch} where status in ('won', 'lost') and closed_at is null",
              "Every won or lost deal has closed_at.", error=True),
    ],
    ("staging", "stg_crm__partners"): [
        Expectation("gx_partner_id_unique", gxe.ExpectColumnValuesToBeUnique(column="partner_id"), True, "One current version per partner."),
        Expectation("gx_partner_status_valid", gxe.ExpectColumnValuesToBeInSet(column="partner_status", value_set=["active", "inactive"]), True, "Status is active or inactive."),
    ],
    ("staging", "stg_crm__touchpoints"): [
        Expectation("gx_touchpoint_id_unique", gxe.ExpectColumnValuesToBeUnique(column="touchpoint_id"), True, "One current version per touchpoint."),
        _rows("gx_touchpoint_partner_known_same_org",
              "select t.* from {batch} as t left join staging.stg_crm__partners as p"
              " on p.partner_id = t.partner_id where p.partner_id is null or p.org_id <> t.org_id",
              "Touchpoints of unknown partners or of another organization's partner (never credited)."),
        _rows("gx_touchpoint_deal_known",
              "select t.* from {batch} as t left join staging.stg_crm__deals as d"
              " on d.deal_id = t.deal_id where d.deal_id is null",
              "Touchpoints of deals that are not (yet) loaded."),
    ],
    ("marts", "fct_deals"): [
        _rows("gx_fx_coverage",
              "select * from {batch} where amount_usd is null",
              "Deals without an FX rate on or before their reference date (no USD amount, not attributed)."),
    ],
}  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    name: str
    success: bool
    error: bool
    unexpected_count: int
    element_count: int | None


def validate_table(url: str, schema: str, table: str) -> list[Outcome]:
    """Run the table's expectations against PostgreSQL; one outcome per expectation."""
    expectations = EXPECTATIONS[(schema, table)]
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_postgres(name="platform", connection_string=url)
    batch = (
        source.add_table_asset(name=f"{schema}.{table}", table_name=table, schema_name=schema)
        .add_batch_definition_whole_table("all")
        .get_batch()
    )
    outcomes = []
    for expected in expectations:
        # One expectation at a time: each result is unambiguously its own.
        validated = batch.validate(expected.expectation, result_format="SUMMARY")
        details = validated.result or {}
        unexpected = details.get("unexpected_count")
        if unexpected is None:  # UnexpectedRowsExpectation reports the row count it found
            unexpected = details.get("observed_value", 0) or 0
        outcomes.append(
            Outcome(
                expected.name,
                bool(validated.success),
                expected.error,
                int(unexpected),
                details.get("element_count"),
            )
        )
    return outcomes
