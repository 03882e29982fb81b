"""The attribution jobs the sensors start: the incremental build, with or without a load first."""

import dagster as dg

# The sensor-started jobs run every step in the run's own process: their steps are
# serialized by the database pool anyway, and a subprocess per step costs seconds of
# Python start-up and imports each — most of a small run's landing-to-mart latency
# (docs/benchmarks.md).
attribution_job = dg.define_asset_job(
    "attribution",
    selection=dg.AssetSelection.groups("staging", "attribution", "marts"),
    description="Build staging, attribution and the marts incrementally (dbt build).",
    executor_def=dg.in_process_executor,
)

# What landing_sensor starts when deals or touchpoints land: the load and the
# incremental build in one run, so a won deal reaches the marts without waiting for
# a second sensor tick and a second run to start (won_deals_sensor then finds the
# marts up to date and starts nothing).
ingest_and_attribute_job = dg.define_asset_job(
    "ingest_and_attribute",
    selection=dg.AssetSelection.groups("ingestion", "staging", "attribution", "marts"),
    description="Load new landing files, then build staging, attribution and the marts.",
    executor_def=dg.in_process_executor,
)
