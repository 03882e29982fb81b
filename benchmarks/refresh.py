"""Attribution stage: ingest a month, full refresh of every model, then one more day
ingested and an incremental run — per model timings and rows from dbt's run_results.json.

`dbt run` (models only) is what docs/contract.md §7 times ("staging to marts"); `dbt test`
is timed separately because the production job (`dbt build`) pays for it too. This
stage measures dbt itself, so it runs dbt directly (`attribution-dbt`, through
orchestration.dbt_invocation.run_dbt), not the Dagster job the product builds with;
the list of marts is the dbt project's (orchestration.dbt_project.mart_tables).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from psycopg import sql

from benchmarks.datasets import Dataset
from benchmarks.stats import rate
from ingestion import ingest_directory
from orchestration.dbt_invocation import run_dbt
from orchestration.dbt_project import mart_tables
from platform_core.database import connect


def layer_of(model: str) -> str:
    if "-on-run-" in model:
        return "hooks"
    if model.startswith("stg_"):
        return "staging"
    if model.startswith("int_"):
        return "intermediate"
    return "marts"


def dbt_invocation(url: str, args: list[str]) -> dict:
    """Run dbt; wall seconds, and per node: seconds, rows written, status."""
    with tempfile.TemporaryDirectory(prefix="bench-dbt-") as tmp:
        clock = time.perf_counter()
        done = run_dbt(url, args, capture=True, target_path=Path(tmp))
        wall = time.perf_counter() - clock
        results_file = Path(tmp) / "target" / "run_results.json"
        results = json.loads(results_file.read_text()) if results_file.exists() else {}
    if done.returncode != 0:
        tail = "\n".join((done.stdout or "").splitlines()[-30:])
        raise RuntimeError(f"dbt {' '.join(args)} failed:\n{tail}")
    nodes = []
    for result in results.get("results", []):
        rows = (result.get("adapter_response") or {}).get("rows_affected")
        name = result["unique_id"].split(".")[-1]
        nodes.append(
            {
                "node": name,
                "layer": layer_of(name),
                "seconds": round(result.get("execution_time") or 0.0, 3),
                "rows": rows if isinstance(rows, int) and rows >= 0 else None,
                "status": result.get("status"),
            }
        )
    by_layer: dict[str, float] = {}
    for node in nodes:
        by_layer[node["layer"]] = round(by_layer.get(node["layer"], 0.0) + node["seconds"], 3)
    return {
        "wall_seconds": round(wall, 3),
        "model_seconds": round(sum(n["seconds"] for n in nodes), 3),
        "by_layer_seconds": by_layer,
        "nodes": nodes,
    }


def _ingest(url: str, directory: Path) -> dict:
    report = ingest_directory(url, directory)
    if not report.ok:
        raise RuntimeError(f"ingestion of {directory} failed: {report.errors}")
    rows = report.total("rows_read")
    return {
        "files": report.count("loaded"),
        "rows": rows,
        "seconds": round(report.seconds, 3),
        "rows_per_s": rate(rows, report.seconds),
    }


def mart_rows(url: str) -> dict[str, int]:
    with connect(url) as conn:
        return {
            table: conn.execute(
                sql.SQL("select count(*) from marts.{}").format(sql.Identifier(table))
            ).fetchone()[0]
            for table in mart_tables()
        }


def run(url: str, ds: Dataset, with_tests: bool = True) -> dict:
    """The whole stage on a fresh, migrated database `url`; leaves the marts built."""
    print(f"  ingest {ds.preset} month …", flush=True)
    month = _ingest(url, ds.month)
    print("  dbt run --full-refresh …", flush=True)
    full = dbt_invocation(url, ["run", "--full-refresh"])
    full_tests = dbt_invocation(url, ["test"]) if with_tests else None
    rows_after_full = mart_rows(url)
    print("  ingest next day, dbt run (incremental) …", flush=True)
    day = _ingest(url, ds.next_day)
    incremental = dbt_invocation(url, ["run"])
    incremental_tests = dbt_invocation(url, ["test"]) if with_tests else None
    with connect(url) as conn:
        # Planner statistics, as a production database would have them after autovacuum.
        conn.execute("analyze")
    return {
        "preset": ds.preset,
        "months": ds.months,
        "ingest_month": month,
        "full_refresh": full,
        "full_refresh_tests_seconds": full_tests and full_tests["wall_seconds"],
        "mart_rows_after_full_refresh": rows_after_full,
        "ingest_next_day": day,
        "incremental": incremental,
        "incremental_tests_seconds": incremental_tests and incremental_tests["wall_seconds"],
        "mart_rows_after_incremental": mart_rows(url),
        "incremental_over_full": round(incremental["model_seconds"] / full["model_seconds"], 3)
        if full["model_seconds"]
        else None,
    }


def prepare(url: str, ds: Dataset) -> None:
    """Untimed: the month ingested and the marts built, for stages that only read them."""
    _ingest(url, ds.month)
    dbt_invocation(url, ["run", "--full-refresh"])
    with connect(url) as conn:
        conn.execute("analyze")
