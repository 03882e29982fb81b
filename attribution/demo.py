"""`attribution demo`: the platform end to end on a small generated dataset."""

from __future__ import annotations

import time
from pathlib import Path

from psycopg import sql

from attribution.pipeline import marts_summary, run_pipeline
from platform_core.database import connect, database_url, redact_url
from synthetic_crm import generate

DEMO_ORGS = 12
DEMO_DAYS = 45  # deals take weeks to close: enough days for won deals to attribute
DEMO_BAD_ROW_RATE = 0.01


def raw_summary(url: str) -> list[str]:
    """Row counts of the raw layer and the most common quarantine reasons."""
    lines = ["raw layer:"]
    with connect(url) as conn:
        for table in (
            "organizations",
            "partners",
            "deals",
            "touchpoints",
            "fx_rates",
            "quarantine",
        ):
            query = sql.SQL("select count(*) from raw.{}").format(sql.Identifier(table))
            (count,) = conn.execute(query).fetchone()
            lines.append(f"  raw.{table:<14} {count:>9,} rows")
        reasons = conn.execute(
            """
            select entity, split_part(reason, ':', 1) as field, count(*)
            from raw.quarantine group by 1, 2 order by 3 desc, 1, 2 limit 5
            """
        ).fetchall()
    if reasons:
        lines.append("  most common quarantine reasons (entity, field, rows):")
        lines += [f"    {entity:<12} {field:<40} {n:>6,}" for entity, field, n in reasons]
    return lines


def run_demo(workdir: Path) -> int:
    clock = time.perf_counter()
    url = database_url()
    print(f"database: {redact_url(url)}")
    landing = workdir / "landing"
    summary = generate(
        landing,
        preset="mvp",
        orgs=DEMO_ORGS,
        days=DEMO_DAYS,
        seed=42,
        bad_row_rate=DEMO_BAD_ROW_RATE,
    )
    print(f"generated {len(summary.files)} files in {landing}")
    result = run_pipeline(url, landing, quiet=True)
    assert result.ingest is not None
    print(result.ingest.lines()[-1])
    for line in raw_summary(url):
        print(line)
    done = [line for line in result.dbt_output.splitlines() if "Done." in line]
    print(f"dbt build: {done[-1].split('Done.')[-1].strip() if done else 'no summary'}")
    if result.dbt_returncode != 0:
        print(result.dbt_output[-5000:])
    for line in marts_summary(url):
        print(line)
    print(f"demo {'finished' if result.ok else 'FAILED'} in {time.perf_counter() - clock:.1f} s")
    print(
        'explore the marts: psql "$(.venv/bin/attribution db url)" -c "table marts.dim_organizations"'
    )
    print("stop the embedded database: make db-stop")
    return 0 if result.ok else 1
