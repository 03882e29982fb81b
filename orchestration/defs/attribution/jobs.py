"""The attribution jobs the sensors start: the incremental build, with or without a load first."""

import dagster as dg

attribution_job = dg.define_asset_job(
    "attribution",
    selection=dg.AssetSelection.groups("staging", "attribution", "marts"),
    description="Build staging, attribution and the marts incrementally (dbt build).",
)

# What landing_sensor starts when deals or touchpoints land: the load and the
# incremental build in one run, so a won deal reaches the marts without waiting for
# a second sensor tick and a second run to start (won_deals_sensor then finds the
# marts up to date and starts nothing).
ingest_and_attribute_job = dg.define_asset_job(
    "ingest_and_attribute",
    selection=dg.AssetSelection.groups("ingestion", "staging", "attribution", "marts"),
    description="Load new landing files, then build staging, attribution and the marts.",
)
