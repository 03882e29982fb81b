"""Run dbt against the database in use.

dbt reads its connection from environment variables (`dbt_project/profiles.yml`);
this module derives them from the database URL, so `DATABASE_URL` (or the
embedded server) is the only setting. The password travels in
`DBT_ENV_SECRET_PGPASSWORD`, which dbt masks in its logs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

from platform_core.settings import project_root

DBT_PROJECT_DIR = project_root() / "dbt_project"


def dbt_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    return {
        "ATTRIBUTION_PGHOST": parts.hostname or "127.0.0.1",
        "ATTRIBUTION_PGPORT": str(parts.port or 5432),
        "ATTRIBUTION_PGUSER": unquote(parts.username or "postgres"),
        "DBT_ENV_SECRET_PGPASSWORD": unquote(parts.password or ""),
        "ATTRIBUTION_PGDATABASE": unquote(parts.path.lstrip("/") or "postgres"),
    }


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
    env = dict(os.environ, **dbt_env(url), DBT_PROFILES_DIR=str(DBT_PROJECT_DIR))
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
