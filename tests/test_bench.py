"""Smoke tests of the benchmark harness (benchmarks) on a tiny dataset.

They check that the harness runs and writes a well-formed report, never how fast
anything is (figures are the benchmark's business, not the tests').
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from benchmarks import history, queries
from benchmarks.datasets import ACTIVITY, count_rows, dataset, last_days
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


def test_one_month_base_keeps_the_last_days_of_activity_and_every_reference_file(
    tmp_path: Path,
) -> None:
    ds = dataset(tmp_path, "mvp", 6, seed=3, orgs=3, days=4)
    short = last_days(ds, 1)
    kept = {p.name for p in short.iterdir() if not p.name.startswith(".")}
    everything = {p.name for p in ds.month.iterdir()}
    last_date = (ds.last_day - timedelta(days=1)).isoformat()
    activity = {n for n in everything if n.split("_")[0] in ACTIVITY}
    assert activity and kept - activity == everything - activity  # every reference file
    assert {n for n in kept if n in activity} == {n for n in activity if last_date in n}
    assert all((short / n).read_bytes() == (ds.month / n).read_bytes() for n in kept)


def test_history_ratios_floor_timer_noise_and_rank_the_worst_first() -> None:
    floor = history.NOISE_FLOOR_S
    assert history.time_ratio(0.05, floor / 2) == 1.0  # both under the floor: no ratio
    assert history.time_ratio(floor, 3 * floor) == 3.0
    assert history.rows_ratio(None, None) is None and history.rows_ratio(0, 0) == 1.0
    run = lambda seconds: {"nodes": [  # noqa: E731
        {"node": name, "layer": layer, "seconds": s, "rows": rows}
        for (name, layer, rows), s in zip(
            [("hook-on-run-start-0", "hooks", None), ("stg_x", "staging", None),
             ("fct_y", "marts", 100)], seconds, strict=True)
    ]}  # fmt: skip
    models = history.compare(run([0.01, 0.1, 1.0]), run([0.01, 0.2, 2.0]))
    assert [m["model"] for m in models] == ["fct_y", "stg_x"]  # hooks left out, worst first
    assert models[0]["ratio"] == 2.0 and not models[0]["met"] and models[1]["met"]


def test_bench_subcommand_hands_its_options_to_the_harness() -> None:
    """`attribution bench` runs the harness as its own process, with its options."""
    import subprocess
    import sys

    from platform_core.settings import project_root

    attribution = Path(sys.executable).with_name("attribution")
    done = subprocess.run(
        [str(attribution), "bench", "--help"], capture_output=True, text=True, cwd=project_root()
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.startswith("usage: attribution bench") and "history" in out and "--stage" in out


@pytest.mark.slow
def test_history_stage_reports_run_and_per_model_ratios(
    server: BenchServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    options = tiny(tmp_path, ["history"])
    options.days = 6  # 6 days of history against the last one
    run_bench(options, server)
    h = json.loads((options.out / "benchmarks.json").read_text())["history"]
    one, six = h["bases"]["one_month"], h["bases"]["six_months"]
    assert (one["history_days"], six["history_days"]) == (1, 6)
    assert 0 < one["ingest_history"]["rows"] < six["ingest_history"]["rows"]
    day = [(b["ingest_next_day"]["files"], b["ingest_next_day"]["rows"]) for b in (one, six)]
    assert day[0] == day[1] and day[0][1] > 0  # the same next day on both
    models = {n["node"] for n in six["incremental"]["nodes"] if n["layer"] != "hooks"}
    assert {"fct_partner_attribution", "partner_performance", "org_daily_metrics"} <= models
    assert (
        set(h["per_model"])
        == models
        == {n["node"] for n in one["incremental"]["nodes"] if n["layer"] != "hooks"}
    )
    assert all(r > 0 for r in h["per_model"].values()) and h["run_ratio"] > 0
    assert h["run_ratio"] == round(
        six["incremental"]["wall_seconds"] / one["incremental"]["wall_seconds"], 2
    )
    printed = capsys.readouterr().out
    assert all(model in printed for model in models) and "run: " in printed
    markdown = (options.out / "benchmarks.md").read_text()
    assert "## History: the next day on 1 month and on 6 months of `mvp`" in markdown
    assert "next day on 6 months ≤ 1.25× on 1 month" in markdown


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


def test_latency_breakdown_splits_a_deal_at_the_milestones_of_the_run_that_loaded_it() -> None:
    """Dagster's events and dbt's log, made up: the deal lands at 95, the ledger finishes
    its file at 106.5 (inside r2's ingestion step, not r1's), the probe sees it at 115.4."""
    from datetime import UTC, datetime

    from benchmarks import latency as lat

    def iso(at: float) -> str:
        return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")

    def line(name: str, at: float, node: dict | None = None) -> dict:
        return {"info": {"name": name, "ts": iso(at)}, "data": {"node_info": node} if node else {}}

    def node(unique_id: str, start: float, end: float) -> dict:
        kind = unique_id.split(".")[0]
        naive = lambda at: iso(at).rstrip("Z")  # noqa: E731 - dbt writes these without a zone
        info = {"unique_id": unique_id, "resource_type": kind,
                "node_started_at": naive(start), "node_finished_at": naive(end)}  # fmt: skip
        return line("NodeFinished", end, info)

    fct_key = '["marts", "fct_partner_attribution"]'
    events = [
        ("r1", "STEP_START", "raw_tables", 80.0, None),
        ("r1", "STEP_SUCCESS", "raw_tables", 81.0, None),
        ("r1", "STEP_START", "dbt_models", 81.5, None),
        ("r1", "PIPELINE_SUCCESS", None, 99.0, None),
        ("r2", "PIPELINE_STARTING", None, 101.0, None),
        ("r2", "PIPELINE_START", None, 104.0, None),
        ("r2", "STEP_START", "raw_tables", 106.0, None),
        ("r2", "STEP_SUCCESS", "raw_tables", 107.0, None),
        ("r2", "STEP_START", "dbt_models", 107.5, None),
        ("r2", lat.DBT_COMMAND, "dbt_models", 108.0, None),
        ("r2", "ASSET_MATERIALIZATION", "dbt_models", 118.0, fct_key),
        ("r2", "PIPELINE_SUCCESS", None, 128.0, None),
    ]
    runs = lat.run_timelines([("r1", "ingest_and_attribute", 78.0),
                              ("r2", "ingest_and_attribute", 100.0)], events)  # fmt: skip
    assert runs["r2"].fct_built == 118.0 and runs["r2"].fct_source == "dagster"
    models = [
        line("MainReportVersion", 109.0),
        line("FoundStats", 110.0),
        node("model.p.stg_deals", 111.0, 112.0),
        node("unit_test.p.fct_partner_attribution.credits", 112.0, 112.5),
        node("model.p.fct_partner_attribution", 113.0, 115.0),
        node("model.p.partner_performance", 115.0, 117.0),
        line("CommandCompleted", 118.0),
    ]
    tests = [line("MainReportVersion", 119.0), node("test.p.t", 119.5, 120.0),
             line("CommandCompleted", 124.0)]  # fmt: skip
    lat.apply_dbt_logs(runs["r2"], [models, tests])
    run = lat.loading_run(106.5, runs.values())
    assert run is runs["r2"] and run.fct_built == 115.0 and run.fct_source == "dbt"
    building_only = lat.run_timelines(
        [("r3", "attribution", 90.0)], [("r3", "STEP_START", "dbt_models", 106.6, None)]
    )
    assert lat.loading_run(106.5, [*building_only.values(), run]) is run  # it loads nothing
    assert run.before_fct == {"stg_deals", "unit_test:fct_partner_attribution.credits"}

    parts = lat.deal_breakdown(95.0, 115.4, run)
    assert parts == pytest.approx({"sensor": 5.0, "queue": 1.0, "launch": 3.0, "code_load": 2.0,
                                   "ingestion": 1.5, "dbt_startup": 3.5, "models_to_fct": 4.0,
                                   "probe": 0.4})  # fmt: skip
    assert list(parts) == [name for name, _ in lat.COMPONENTS]
    figures = lat.summarize({"d": {"run_id": "r2", "latency_s": 20.4, "parts": parts}}, runs)
    assert figures["components"]["dbt_startup"]["p95_s"] == 3.5
    (landing,) = figures["runs"]  # r1 loaded no counted deal
    assert landing["run_id"] == "r2" and landing["tail_s"] == 13.0
    assert (landing["dbt_process_s"], landing["dbt_parse_hooks_s"]) == (1.5, 2.0)
    assert (landing["dbt_prepare_s"], landing["dbt_spawn_s"]) == (0.5, 1.0)
    assert landing["dbt_parse_s"] == 1.0 and landing["full_parse"] is False
    tail = landing["models_after_fct_s"] + landing["data_tests_s"] + landing["after_dbt_s"]
    assert tail == pytest.approx(landing["tail_s"])
    assert figures["dbt_models"]["stg_deals"]["before_fct"] == 1
    assert figures["dbt_models"]["partner_performance"]["before_fct"] == 0

    # A run created before the deal landed: the deal waited from its landing only.
    early = lat.deal_breakdown(100.5, 115.4, run)
    assert early["sensor"] == 0.0 and early["queue"] == 0.5
    assert sum(early.values()) == pytest.approx(115.4 - 100.5)

    # Without dbt's log the built time is Dagster's event (all models done): no dbt start-up.
    fallback = lat.run_timelines([("r2", "ingest_and_attribute", 100.0)], events)["r2"]
    parts = lat.deal_breakdown(95.0, 118.3, fallback)
    assert parts["dbt_startup"] is None and parts["models_to_fct"] == pytest.approx(10.5)
    assert sum(v for v in parts.values() if v is not None) == pytest.approx(118.3 - 95.0)


def test_neighbour_file_loads_every_row_as_its_organizations_touchpoints(
    db_url: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    import psycopg

    from benchmarks import latency as lat
    from ingestion import ingest_directory

    closed = datetime(2026, 1, 20, 12, tzinfo=UTC)
    deals = [
        lat.NeighbourDeal("d_won", datetime(2026, 1, 2, tzinfo=UTC), closed),
        lat.NeighbourDeal("d_open", datetime(2026, 1, 3, tzinfo=UTC), None),
    ]
    path = lat.write_neighbour_file(tmp_path, "org_big", deals, ["p1", "p2", "p3"], 500)
    assert [p.name for p in tmp_path.iterdir()] == [lat.NEIGHBOUR_FILE]  # no temporary left

    report = ingest_directory(db_url, tmp_path)
    assert report.ok and report.total("rows_loaded") == 500
    assert report.total("rows_quarantined") == 0
    assert lat._ledger_loads(db_url, [path.name])[path.name]["rows_loaded"] == 500
    with psycopg.connect(db_url) as conn:
        orgs, ids, late = conn.execute(
            "select array_agg(distinct org_id), count(distinct touchpoint_id),"
            " count(*) filter (where deal_id = 'd_won' and occurred_at > %s)"
            " from raw.touchpoints",
            [closed],
        ).fetchone()
    assert orgs == ["org_big"] and ids == 500
    assert late == 0  # before the won deal closed: they change its attribution


def test_memory_probe_reports_its_own_process_not_the_one_that_started_it() -> None:
    # The parent holds 256 MiB; ru_maxrss in the child would report at least that
    # (Linux keeps it across exec), which is what the probe used to publish.
    ballast = bytearray(b"\x01") * (256 * 2**20)
    probe = "from benchmarks.memprobe import own_peak_rss_mb; print(own_peak_rss_mb())"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert len(ballast) == 256 * 2**20
    assert 1 < float(done.stdout) < 128
