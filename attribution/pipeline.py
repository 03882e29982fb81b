"""The platform end to end: ingest the landing folder, build every dbt model and test.

`attribution run` and `attribution demo` call this; the Dagster job runs the
same steps as assets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from attribution.database import connect
from attribution.dbt import run_dbt
from attribution.migrations import migrate
from ingestion import IngestReport, ingest_directory

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

    @property
    def ok(self) -> bool:
        return (self.ingest is None or self.ingest.ok) and self.dbt_returncode == 0


def build_models(url: str, full_refresh: bool = False, quiet: bool = False) -> tuple[int, str]:
    """`dbt build` (models, data tests, unit tests); returns (exit code, output if quiet)."""
    args = ["build", *(["--full-refresh"] if full_refresh else [])]
    result = run_dbt(url, args, capture=quiet)
    return result.returncode, (result.stdout or "") + (result.stderr or "")


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
