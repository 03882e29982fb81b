"""A generated export with bad rows: nothing is lost (docs/contract.md §3.1), CSV and JSONL alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingestion import ingest_directory
from synthetic_crm import generate
from tests.ingest_helpers import counts, fetch


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_rows_read_equal_loaded_plus_quarantined(
    fresh_db_url: str, tmp_path: Path, file_format: str
) -> None:
    summary = generate(
        tmp_path, orgs=10, days=10, seed=5, bad_row_rate=0.05, file_format=file_format
    )
    report = ingest_directory(fresh_db_url, tmp_path)
    assert report.ok and report.count("refused") == 0
    # Per batch, from the ledger.
    for file_name, read, loaded, quarantined in fetch(
        fresh_db_url,
        "select file_name, rows_read, rows_loaded, rows_quarantined from raw.ingest_batches",
    ):
        assert read == loaded + quarantined, file_name
    # In total: every written row is read; every bad row the generator made is quarantined.
    assert report.total("rows_read") == sum(summary.rows.values())
    assert report.total("rows_quarantined") == sum(summary.bad_rows.values())
    assert sum(summary.bad_rows.values()) > 50
    table_counts = counts(fresh_db_url)
    assert table_counts["quarantine"] == report.total("rows_quarantined")
    raw_rows = sum(v for k, v in table_counts.items() if k != "quarantine")
    assert raw_rows == report.total("rows_loaded")
    # Every quarantined row says why.
    assert fetch(fresh_db_url, "select count(*) from raw.quarantine where reason = ''") == [(0,)]
