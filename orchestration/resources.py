"""Resources shared by the definitions, configured from the environment (dg.EnvVar)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from orchestration.dbt_invocation import dbt_env


class PlatformDatabase(dg.ConfigurableResource):
    """The platform's PostgreSQL (the same database `attribution` uses)."""

    url: str

    @contextlib.contextmanager
    def dbt_environment(self) -> Iterator[None]:
        """dbt reads its connection from the environment (dbt_project/profiles.yml);
        set it for the dbt subprocess started inside this block."""
        saved = {key: os.environ.get(key) for key in dbt_env(self.url)}
        os.environ.update(dbt_env(self.url))
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


class LandingFolder(dg.ConfigurableResource):
    """Where CRM exports land (docs/contract.md §2)."""

    path: str

    @property
    def directory(self) -> Path:
        return Path(self.path)


class AlertWebhook(dg.ConfigurableResource):
    """Slack-compatible incoming webhook, from the environment variable named here
    (read when an alert is sent, so an unset variable means "log only")."""

    url_variable: str = "ALERT_WEBHOOK_URL"

    def url(self) -> str:
        return os.environ.get(self.url_variable, "")


def platform_resources() -> dict[str, dg.ConfigurableResource]:
    from orchestration.dbt_project import dbt_cli

    return {
        "database": PlatformDatabase(url=dg.EnvVar("DATABASE_URL")),
        "landing": LandingFolder(path=dg.EnvVar("LANDING_DIR")),
        "alert_webhook": AlertWebhook(),
        "dbt": dbt_cli(),
    }
