"""The attribution jobs the sensors start: the incremental build, and the landing run's
short path to `fct_partner_attribution`."""

import dagster as dg

DBT_GROUPS = ("staging", "attribution", "marts")
WON_DEAL_MART = dg.AssetKey(["marts", "fct_partner_attribution"])

attribution_job = dg.define_asset_job(
    "attribution",
    selection=dg.AssetSelection.groups(*DBT_GROUPS),
    description="Build staging, attribution and the marts incrementally (dbt build), then"
    " their data tests.",
)

# What landing_sensor starts when deals or touchpoints land: the load, then only the
# models a won deal must cross to reach fct_partner_attribution (the mart a partner
# manager watches), without their data tests or quality checks — the shortest path
# from a file to the mart (docs/orchestration.md, "Latency"). The other marts and
# every check follow in an `attribution` run that marts_catch_up_sensor starts once
# landing is quiet, or at the latest a few minutes later; every incremental model
# keeps its own watermark, so that run absorbs everything the landing runs loaded.
WON_DEAL_PATH = (
    dg.AssetSelection.assets(WON_DEAL_MART).upstream() & dg.AssetSelection.groups(*DBT_GROUPS)
).without_checks()

ingest_and_attribute_job = dg.define_asset_job(
    "ingest_and_attribute",
    selection=dg.AssetSelection.groups("ingestion") | WON_DEAL_PATH,
    description="Load new landing files, then build the models on the way to"
    " fct_partner_attribution (no data tests; the rest follows in `attribution`).",
)
