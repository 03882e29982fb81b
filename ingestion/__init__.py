"""Ingestion: validate CRM export files and bulk-load them into the raw tables.

Plain Python with no Dagster import, so the CLI, the Dagster assets and the tests
all call the same code.
"""

from ingestion.service import IngestReport, ingest_directory

__all__ = ["IngestReport", "ingest_directory"]
