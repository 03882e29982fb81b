"""Dagster's home for the command line and `make dev`: storage in PostgreSQL.

Dagster's runs, sensor cursors and check history live in the database `dagster`
on the platform's PostgreSQL server (created on first use), configured by the
repository's dagster.yaml copied into DAGSTER_HOME (default
`<checkout>/.dagster_home`). `attribution run` and `attribution demo` open that
instance from their settings (`open_instance`); `attribution dev` gives the same
values to the Dagster processes it starts (`dagster_environment`). So the UI shows
the runs the command line made.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef
from psycopg import sql

from platform_core.database import connect
from platform_core.settings import DAGSTER_DATABASE, Settings, project_root

# dagster.yaml reads the storage URL from this variable (`env: DAGSTER_PG_URL`).
STORAGE_VARIABLE = "DAGSTER_PG_URL"


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


def prepare_home(settings: Settings) -> Path:
    """DAGSTER_HOME (default `<checkout>/.dagster_home`), with a dagster.yaml."""
    home = settings.dagster_home_dir
    home.mkdir(parents=True, exist_ok=True)
    # The checkout's own home follows the repository's dagster.yaml; a DAGSTER_HOME the
    # operator chose keeps the file they may have edited.
    if settings.dagster_home is None or not (home / "dagster.yaml").exists():
        shutil.copy(project_root() / "dagster.yaml", home / "dagster.yaml")
    return home


def storage_url(settings: Settings, platform_url: str) -> str:
    """DAGSTER_PG_URL, else the `dagster` database on the platform's server."""
    return settings.dagster_pg_url or dagster_storage_url(platform_url)


def dagster_environment(settings: Settings, platform_url: str) -> dict[str, str]:
    """The variables the Dagster processes `attribution dev` starts need (their
    dagster.yaml and resources read them): home, storage and platform database."""
    return {
        "DAGSTER_HOME": str(prepare_home(settings)),
        STORAGE_VARIABLE: storage_url(settings, platform_url),
        "DATABASE_URL": platform_url,
    }


def _resolved(value: Any, variables: Mapping[str, str]) -> Any:
    """`value` with each `{env: NAME}` of `variables` replaced by its value."""
    if isinstance(value, dict):
        if set(value) == {"env"} and value["env"] in variables:
            return variables[value["env"]]
        return {key: _resolved(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolved(item, variables) for item in value]
    return value


def instance_ref(settings: Settings, platform_url: str) -> InstanceRef:
    """The instance of DAGSTER_HOME, its storage URL given by value rather than
    through the environment: the sections of dagster.yaml that read DAGSTER_PG_URL
    get the URL this command resolved; the rest of the file applies as written."""
    home = prepare_home(settings)
    config = yaml.safe_load((home / "dagster.yaml").read_text()) or {}
    variables = {STORAGE_VARIABLE: storage_url(settings, platform_url)}
    overrides = {
        key: resolved
        for key, value in config.items()
        if (resolved := _resolved(value, variables)) != value
    }
    return InstanceRef.from_dir(str(home), overrides=overrides)


def open_instance(ref: InstanceRef) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(ref)
