"""The ingestion job: load new and changed landing files."""

import dagster as dg

# The sensor-started jobs run every step in the run's own process: their steps are
# serialized by the database pool anyway, and a subprocess per step costs seconds of
# Python start-up and imports each — most of a small run's landing-to-mart latency
# (docs/benchmarks.md).
ingest_job = dg.define_asset_job(
    "ingest",
    selection=dg.AssetSelection.groups("ingestion"),
    description="Load new and changed landing files into the raw tables.",
    executor_def=dg.in_process_executor,
)
