"""The ingestion job: load new and changed landing files."""

import dagster as dg

ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups("ingestion"),
    description="Load new and changed landing files into the raw tables.",
)
