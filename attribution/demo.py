"""`attribution demo`: the platform end to end on a small generated dataset.

It builds the way `attribution run` does — the Dagster job `daily_refresh`, on the
instance `make dev` shows — with the demo's landing folder as LANDING_DIR, so
after `make demo` the UI holds its run, materializations and check results.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from attribution.summaries import raw_summary
from platform_core.database import connect, database_url, redact_url
from platform_core.settings import Settings
from synthetic_crm import generate

DEMO_ORGS = 12
DEMO_DAYS = 45  # deals take weeks to close: enough days for won deals to attribute
DEMO_BAD_ROW_RATE = 0.01


def run_demo(settings: Settings, workdir: Path) -> int:
    from attribution.cli import marts_lines, refresh
    from orchestration.run import RunStopped

    clock = time.perf_counter()
    url = database_url(settings=settings)
    connect(url).close()  # an unreachable or too old server stops the demo before it generates
    print(f"database: {redact_url(url)}")
    landing = (workdir / "landing").resolve()
    summary = generate(
        landing,
        preset="mvp",
        orgs=DEMO_ORGS,
        days=DEMO_DAYS,
        seed=42,
        bad_row_rate=DEMO_BAD_ROW_RATE,
    )
    print(f"generated {len(summary.files)} files in {landing}")
    try:
        outcome = refresh(dataclasses.replace(settings, landing_dir=landing), url)
    except RunStopped as stopped:
        return stopped.finish()
    for line in raw_summary(url) + marts_lines(url, outcome.ok):
        print(line)
    print(f"demo {'finished' if outcome.ok else 'FAILED'} in {time.perf_counter() - clock:.1f} s")
    print(
        f"its run, materializations and checks in the Dagster UI: make dev (run {outcome.run_id})"
    )
    print(
        'explore the marts: psql "$(.venv/bin/attribution db url)" -c "table marts.dim_organizations"'
    )
    print("stop the embedded database: make db-stop")
    return 0 if outcome.ok else 1
