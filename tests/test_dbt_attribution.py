"""The dbt models against the reference implementation, full and incremental (docs/contract.md §4, §5)."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from synthetic_crm import generate
from tests.dbt_harness import (
    assert_marts_equal,
    assert_matches_reference,
    assert_readable_index_names,
    build,
    build_pair,
    ingest,
    paired_databases,
    stage,
)

DAYS = 40
# Incremental steps (first day, last day): a big first load, then smaller ones,
# the last a single day as a daily run would see.
STEPS = [(0, 19), (20, 29), (30, 38), (39, 39)]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    generate(out, orgs=10, days=DAYS, seed=11, bad_row_rate=0.01)
    return out


def day_files(export: Path, first: int, last: int) -> list[Path]:
    """The files of generated days first..last (day 0 also brings orgs and partners)."""
    stamps = {(date(2026, 1, 1) + timedelta(days=d)).isoformat() for d in range(first, last + 1)}
    files = sorted(p for p in export.iterdir() if p.stem.rsplit("_", 1)[-1] in stamps)
    if first == 0:
        files += [export / "organizations.csv", export / "partners.csv"]
    return files


@pytest.mark.slow  # ~35 s; tests/test_dbt_property.py checks the same in make test
def test_incremental_runs_equal_full_refresh_and_the_reference(
    server_url: str, export: Path, tmp_path: Path
) -> None:
    with paired_databases(server_url, "dbt") as (incremental, full):
        compared = 0
        for step, (first, last) in enumerate(STEPS):
            files = day_files(export, first, last)
            for url, landing in ((incremental, tmp_path / "inc"), (full, tmp_path / "full")):
                stage(files, landing)
                ingest(url, landing)
            if step in (0, len(STEPS) - 1):
                build_pair(incremental, full, tmp_path)
                assert_marts_equal(incremental, full)
                compared = assert_matches_reference(incremental)
                # Readable on a first build and after a full refresh that replaced
                # every table while the old ones and their indexes still existed.
                for url in (incremental, full):
                    assert_readable_index_names(url)
            else:
                build(incremental, tmp_path / "dbt-inc")
        assert compared > 200, "too few attribution rows to mean anything"
