"""The platform end to end: ingest the landing folder, build every dbt model and test.

`attribution run --full-refresh` and `attribution demo` call this; the Dagster job
runs the same steps as assets. As there, the models are built first and the data
tests run after them: a data test failing for one organization's rows never
skips a model, so every organization's marts are built; the failure is reported
(with the organizations it concerns) and the exit code says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from ingestion import IngestReport, ingest_directory
from orchestration.dbt_invocation import run_dbt
from orchestration.dbt_project import failed_test_lines
from platform_core.database import connect
from platform_core.migrations import migrate

MART_TABLES = (
    "fct_partner_attribution",
    "fct_deals",
    "partner_performance",
    "org_daily_metrics",
    "dim_organizations",
    "attribution_backlog",
)


@dataclass
class PipelineResult:
    ingest: IngestReport | None = None
    dbt_returncode: int | None = None
    dbt_output: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    # One line per failed data test: its name and the organizations it fails for.
    test_failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.ingest is None or self.ingest.ok) and self.dbt_returncode == 0


# Phase 1: models, seeds, snapshots and unit tests (a unit test gates its model);
# phase 2: the data tests, on what phase 1 built.
BUILD_MODELS = ["build", "--exclude-resource-type", "test"]
# `build` restricted to data tests rather than `dbt test`: `attribution-dbt` runs it
# under the build lock, so the tests never read a build half-way (another run's).
RUN_DATA_TESTS = ["build", "--resource-type", "test"]


def build_models(url: str, full_refresh: bool = False, quiet: bool = False) -> tuple[int, str]:
    """Models and unit tests, then data tests; returns (exit code, output if quiet).

    The exit code is the models' when they failed (the data tests are then not
    run: they would test a half-built set), else the data tests'.
    """
    args = [*BUILD_MODELS, *(["--full-refresh"] if full_refresh else [])]
    models = run_dbt(url, args, capture=quiet)
    output = (models.stdout or "") + (models.stderr or "")
    if models.returncode != 0:
        return models.returncode, output
    tests = run_dbt(url, RUN_DATA_TESTS, capture=quiet)
    return tests.returncode, output + (tests.stdout or "") + (tests.stderr or "")


def run_pipeline(
    url: str, landing: Path | None, full_refresh: bool = False, quiet: bool = False
) -> PipelineResult:
    result = PipelineResult()
    migrate(url)
    if landing is not None:
        clock = time.perf_counter()
        result.ingest = ingest_directory(url, landing)
        result.timings["ingest"] = time.perf_counter() - clock
    clock = time.perf_counter()
    result.dbt_returncode, result.dbt_output = build_models(url, full_refresh, quiet)
    result.timings["dbt build"] = time.perf_counter() - clock
    if result.dbt_returncode != 0:
        result.test_failures = failed_test_lines(url)
        if not quiet:
            for line in result.test_failures:
                print(f"data test failed: {line}")
    return result


def marts_summary(url: str) -> list[str]:
    """What the marts hold now: row counts, deals attributed, revenue by model, backlog."""
    lines = []
    with connect(url) as conn:
        lines.append("marts:")
        for table in MART_TABLES:
            query = sql.SQL("select count(*) from marts.{}").format(sql.Identifier(table))
            (count,) = conn.execute(query).fetchone()
            lines.append(f"  marts.{table:<24} {count:>10,} rows")
        won, attributed, revenue = conn.execute(
            """
            select count(*) filter (where is_won),
                   count(*) filter (where is_won and eligible_touchpoint_count > 0
                                    and amount_usd is not null),
                   coalesce(sum(amount_usd) filter (where is_won), 0)
            from marts.fct_deals
            """
        ).fetchone()
        lines.append(
            f"won deals: {won:,} (USD {revenue:,.2f}); attributed to partners: {attributed:,}"
        )
        lines.append("attributed revenue by model (USD):")
        for model, amount, partners in conn.execute(
            """
            select attribution_model, sum(attributed_amount_usd), count(distinct partner_id)
            from marts.fct_partner_attribution group by 1 order by 1
            """
        ):
            lines.append(f"  {model:<16} {amount:>16,.2f}  ({partners:,} partners)")
        pending, oldest = conn.execute(
            "select count(*), max(pending_for) from marts.attribution_backlog"
        ).fetchone()
        lines.append(
            f"attribution backlog: {pending:,} pending won deals (oldest: {oldest or '-'})"
        )
    return lines
