"""Ingestion: the raw tables, the landing sensor, the ingest job."""
