"""Smoke tests of the benchmark harness (benchmarks) on a tiny dataset.

They check that the harness runs and writes a well-formed report, never how fast
anything is (figures are the benchmark's business, not the tests').
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import queries
from benchmarks.datasets import count_rows
from benchmarks.report import BEGIN, END, merge
from benchmarks.runner import BenchOptions, run_bench
from benchmarks.server import BenchServer
from benchmarks.stats import latency_summary, percentile
from platform_core.database import _bin

PASSWORD = "bench-smoke-test-password"


@pytest.fixture
def server(server_url: str, monkeypatch: pytest.MonkeyPatch) -> BenchServer:
    monkeypatch.setenv("BI_READER_PASSWORD", PASSWORD)
    return BenchServer(server_url, _bin("psql"), embedded=False)


def tiny(tmp_path: Path, stages: list[str]) -> BenchOptions:
    return BenchOptions(
        presets=["mvp"], stages=stages, work=tmp_path / "work", out=tmp_path / "docs",
        orgs=6, days=4, bi_samples=5, dbt_tests=False,
    )  # fmt: skip


def test_percentiles_are_measured_values() -> None:
    values = [0.004, 0.001, 0.003, 0.002]
    assert percentile(values, 50) == 0.002
    assert percentile(values, 95) == 0.004
    assert percentile([], 50) is None
    summary = latency_summary(values)
    assert summary["n"] == 4 and summary["p50_ms"] == 2.0 and summary["max_ms"] == 4.0


def test_merge_keeps_other_presets_and_replaces_other_sections() -> None:
    old = {"schema_version": 1, "attribution": {"mvp": 1, "early": 2}, "latency": {"p95_s": 9}}
    new = {"schema_version": 1, "attribution": {"early": 3}, "latency": {"p95_s": 4}}
    assert merge(old, new) == {
        "schema_version": 1, "attribution": {"mvp": 1, "early": 3}, "latency": {"p95_s": 4},
    }  # fmt: skip
    assert merge({"schema_version": 0, "ingestion": 1}, new) == new


def test_ingest_stage_writes_json_and_markdown_under_the_intro(
    server: BenchServer, tmp_path: Path
) -> None:
    options = tiny(tmp_path, ["ingest"])
    options.out.mkdir(parents=True)
    intro = "# Benchmarks\n\nHand-written introduction.\n"
    (options.out / "benchmarks.md").write_text(
        intro + "\n" + BEGIN + "\nold figures\n" + END + "\n"
    )
    run_bench(options, server)
    run_bench(options, server)  # regenerating replaces the generated part only

    figures = json.loads((options.out / "benchmarks.json").read_text())
    assert {"machine", "versions", "generated_at", "ingestion"} <= set(figures)
    assert figures["machine"]["cores"] >= 1 and figures["versions"]["postgres"]
    ing = figures["ingestion"]
    single = next((options.work / "data").glob("mvp-*")) / "single" / "touchpoints_all"
    rows = count_rows(single / "touchpoints_all.csv")
    assert rows > 0
    assert ing["rows"] == ing["loader"]["rows_read"] == ing["psql_copy"]["rows"] == rows
    assert ing["pandas_to_sql"]["rows"] == rows  # below the prefix limit: the whole file
    assert [p["rows"] for p in ing["peak_rss_mb"]] == [rows // 4, rows]

    markdown = (options.out / "benchmarks.md").read_text()
    assert markdown.startswith(intro)
    assert markdown.count(BEGIN) == 1 and markdown.count(END) == 1
    assert "old figures" not in markdown
    assert "## Ingestion" in markdown and "psql \\copy" in markdown


@pytest.mark.slow
def test_attribution_and_bi_query_stages_report_every_model_and_plan(
    server: BenchServer, tmp_path: Path
) -> None:
    options = tiny(tmp_path, ["attribution", "bi-queries"])
    figures = run_bench(options, server)
    run = figures["attribution"]["mvp"]
    full = {n["node"]: n for n in run["full_refresh"]["nodes"]}
    assert {"fct_partner_attribution", "fct_deals", "stg_crm__deal_versions"} <= set(full)
    assert full["fct_deals"]["rows"] == run["mart_rows_after_full_refresh"]["fct_deals"] > 0
    assert run["ingest_next_day"]["rows"] > 0
    assert (
        run["mart_rows_after_incremental"]["fct_deals"]
        >= run["mart_rows_after_full_refresh"]["fct_deals"]
    )
    bi = figures["bi_queries"]["mvp"]
    assert set(bi["plans"]) == {q.name for q in queries.QUERIES}
    assert all(bi["queries"][q.name]["n"] == options.bi_samples for q in queries.QUERIES)
    markdown = (options.out / "benchmarks.md").read_text()
    for heading in ("## Scaling curve", "## BI queries as `bi_reader`"):
        assert heading in markdown


def test_latency_probe_sees_a_deal_while_it_waits_between_waves(fresh_db_url: str) -> None:
    """A deal reaching the mart during the gap before the next wave is timed then, not
    when the last wave has been dropped (which once turned the gaps into "latencies")."""
    import subprocess
    import sys
    import threading
    import time

    import psycopg

    from benchmarks.latency import _wait_all

    with psycopg.connect(fresh_db_url, autocommit=True) as conn:
        conn.execute("create schema if not exists marts")
        conn.execute("create table if not exists marts.fct_partner_attribution (deal_id text)")

    def arrive() -> None:
        time.sleep(1.0)
        with psycopg.connect(fresh_db_url, autocommit=True) as conn:
            conn.execute("insert into marts.fct_partner_attribution values ('d1')")

    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        dropped = {"d1": time.monotonic(), "d2": time.monotonic()}
        seen: dict[str, float] = {}
        threading.Thread(target=arrive).start()
        _wait_all(fresh_db_url, dropped, 60, idle, Path("daemon.log"), seen, for_seconds=4.0)
    finally:
        idle.kill()
        idle.wait()
    assert set(seen) == {"d1"}  # d2 never arrived: the gap ended without it
    assert 0.9 <= seen["d1"] - dropped["d1"] < 2.5
