"""The platform's settings: every environment variable it reads, read in one place.

A command reads them once (`Settings.from_environment()`) and passes the object
down; nothing else in the product looks at `os.environ` for configuration, and
nothing writes to it. docs/configuration.md lists each variable and its default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Dagster's storage: this database on the platform's server unless DAGSTER_PG_URL says otherwise.
DAGSTER_DATABASE = "dagster"
# The platform's own database on the embedded server.
DEFAULT_DATABASE = "attribution"
# Automated backups (orchestration/defs/platform/backups.py): daily at 02:00 UTC, an
# hour after the 01:00 daily_refresh starts; a week of them kept.
DEFAULT_BACKUP_CRON = "0 2 * * *"
DEFAULT_BACKUP_KEEP = 7


def project_root() -> Path:
    """The checkout this code runs from (the embedded data and Dagster home live inside it)."""
    return Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """What the operator configured. Unset values are None: their defaults are decided
    by the code that uses them (the embedded server, `<checkout>/.dagster_home`)."""

    database_url: str | None = None  # DATABASE_URL; None: the embedded server
    landing_dir: Path | None = None  # LANDING_DIR: where CRM exports land
    embedded_pg_dir: Path | None = None  # EMBEDDED_PG_DIR; None: <checkout>/.pgdata
    dagster_home: Path | None = None  # DAGSTER_HOME; None: <checkout>/.dagster_home
    dagster_pg_url: str | None = None  # DAGSTER_PG_URL; None: `dagster` on the platform's server
    alert_webhook_url: str = ""  # ALERT_WEBHOOK_URL; empty: alerts are only logged
    backup_dir: Path | None = None  # BACKUP_DIR; None: <checkout>/data/backups
    backup_keep: int = DEFAULT_BACKUP_KEEP  # BACKUP_KEEP: complete backups kept
    backup_cron: str = DEFAULT_BACKUP_CRON  # BACKUP_CRON: when the backup job runs (UTC)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def path(name: str) -> Path | None:
            value = text(name)
            return Path(value) if value else None

        return cls(
            database_url=text("DATABASE_URL"),
            landing_dir=path("LANDING_DIR"),
            embedded_pg_dir=path("EMBEDDED_PG_DIR"),
            dagster_home=path("DAGSTER_HOME"),
            dagster_pg_url=text("DAGSTER_PG_URL"),
            alert_webhook_url=text("ALERT_WEBHOOK_URL") or "",
            backup_dir=path("BACKUP_DIR"),
            backup_keep=_keep(text("BACKUP_KEEP")),
            backup_cron=" ".join((text("BACKUP_CRON") or DEFAULT_BACKUP_CRON).split()),
        )

    @property
    def embedded_dir(self) -> Path:
        return self.embedded_pg_dir or project_root() / ".pgdata"

    @property
    def dagster_home_dir(self) -> Path:
        return self.dagster_home or project_root() / ".dagster_home"

    @property
    def backup_root(self) -> Path:
        return self.backup_dir or project_root() / "data" / "backups"


def _keep(raw: str | None) -> int:
    """BACKUP_KEEP: refused unless a whole number of at least 1 (keeping none would
    delete the backup just written)."""
    if raw is None:
        return DEFAULT_BACKUP_KEEP
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"BACKUP_KEEP={raw!r}: expected how many backups to keep (1 or more)")
    return int(raw)
