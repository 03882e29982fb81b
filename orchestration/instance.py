"""Dagster's home for the command line and `make dev`: storage in PostgreSQL.

Dagster's runs, sensor cursors and check history live in the database `dagster`
on the platform's PostgreSQL server (created on first use), configured by the
repository's dagster.yaml copied into DAGSTER_HOME.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from psycopg import sql

from platform_core.database import connect
from platform_core.settings import (
    DAGSTER_DATABASE,  # noqa: F401 - where it is declared
    project_root,
)


def dagster_storage_url(platform_url: str) -> str:
    """The `dagster` database next to the platform's, created if missing (psycopg2 URL:
    dagster-postgres needs that driver)."""
    parts = urlsplit(platform_url)
    with connect(platform_url, autocommit=True) as conn:  # errors without the password
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", [DAGSTER_DATABASE]
        ).fetchone()
        if not exists:
            database = sql.Identifier(DAGSTER_DATABASE)
            conn.execute(sql.SQL("create database {}").format(database))
            # Only the platform's own role uses it: organization logins must not connect.
            conn.execute(
                sql.SQL("revoke connect, temporary on database {} from public").format(database)
            )
    url = urlunsplit(parts._replace(path=f"/{DAGSTER_DATABASE}"))
    return url.replace("postgresql://", "postgresql+psycopg2://", 1).replace(
        "postgres://", "postgresql+psycopg2://", 1
    )


def dagster_environment(platform_url: str) -> dict[str, str]:
    """DAGSTER_HOME (default `<checkout>/.dagster_home`) with dagster.yaml, and its storage URL."""
    own_home = not os.environ.get("DAGSTER_HOME")
    home = Path(os.environ.get("DAGSTER_HOME") or project_root() / ".dagster_home")
    home.mkdir(parents=True, exist_ok=True)
    # The checkout's own home follows the repository's dagster.yaml; a DAGSTER_HOME the
    # operator chose keeps the file they may have edited.
    if own_home or not (home / "dagster.yaml").exists():
        shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    return {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": os.environ.get("DAGSTER_PG_URL") or dagster_storage_url(platform_url),
        "DATABASE_URL": platform_url,
    }
