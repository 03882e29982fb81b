"""Where the dbt project is and how dbt is started: always as `attribution-dbt`.

`attribution-dbt` (orchestration/dbt_build_lock.py) turns `DATABASE_URL` into the
connection dbt_project/profiles.yml reads, so a caller hands a child dbt the URL
to build and nothing else. `run_dbt` is for the tests and the benchmarks, which
time or check dbt itself; the product builds only through the Dagster asset
`dbt_models` (orchestration/defs/attribution/dbt_assets.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from platform_core.settings import project_root

DBT_PROJECT_DIR = project_root() / "dbt_project"


def dbt_executable() -> str:
    """`attribution-dbt`: dbt itself, with writing commands under the build lock
    (orchestration/dbt_build_lock.py), so two builds never interleave on one database."""
    candidate = Path(sys.executable).parent / "attribution-dbt"
    return str(candidate) if candidate.exists() else "attribution-dbt"


def run_dbt(
    url: str, args: list[str], capture: bool = False, target_path: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """`dbt <args>` in the project folder; returns the finished process.

    `target_path` keeps concurrent invocations (tests, the Dagster daemon) from
    sharing dbt's target/ and log folders.
    """
    env = dict(os.environ, DATABASE_URL=url, DBT_PROFILES_DIR=str(DBT_PROJECT_DIR))
    env.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    if target_path is not None:
        env["DBT_TARGET_PATH"] = str(target_path / "target")
        env["DBT_LOG_PATH"] = str(target_path / "logs")
    return subprocess.run(
        [dbt_executable(), *args, "--project-dir", str(DBT_PROJECT_DIR)],
        env=env,
        cwd=DBT_PROJECT_DIR,
        text=True,
        capture_output=capture,
        check=False,
    )
