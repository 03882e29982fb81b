"""Resources shared by the definitions.

Two ways to configure them, one set of classes: the workspace (`dagster dev`, the
daemon, `dg`) reads the environment when a run starts (`dg.EnvVar`); a command
that has read its settings once (`attribution run`) passes concrete values
(`configured_resources`). Nothing here writes to the environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg

from orchestration.dbt_project import dbt_cli
from platform_core.settings import Settings


class PlatformDatabase(dg.ConfigurableResource):
    """The platform's PostgreSQL (the same database `attribution` uses).

    dbt does not take its connection from here: `attribution-dbt` resolves the same
    `DATABASE_URL` (or embedded server) from the environment it inherits."""

    url: str


class LandingFolder(dg.ConfigurableResource):
    """Where CRM exports land (docs/contract.md §2)."""

    path: str

    @property
    def directory(self) -> Path:
        return Path(self.path)


class AlertWebhook(dg.ConfigurableResource):
    """Slack-compatible incoming webhook: `webhook_url` when given, else the environment
    variable named here, read when an alert is sent (unset: alerts are only logged)."""

    url_variable: str = "ALERT_WEBHOOK_URL"
    webhook_url: str | None = None

    def url(self) -> str:
        if self.webhook_url is not None:
            return self.webhook_url
        return os.environ.get(self.url_variable, "")


def platform_resources() -> dict[str, Any]:
    """For the workspace: the database and landing folder from the environment of the run."""
    return {
        "database": PlatformDatabase(url=dg.EnvVar("DATABASE_URL")),
        "landing": LandingFolder(path=dg.EnvVar("LANDING_DIR")),
        "alert_webhook": AlertWebhook(),
        "dbt": dbt_cli(),
    }


def configured_resources(
    settings: Settings, database_url: str, needs_landing: bool = True
) -> dict[str, Any]:
    """For a command: the values it resolved (the database URL: `DATABASE_URL` or the
    embedded server's) and read from its settings (the landing folder, the webhook).
    A job that ingests nothing (`needs_landing=False`: closing commissions) runs
    without LANDING_DIR.

    Given by value, not as resource config: Dagster stores a job's snapshot, with
    its resources' config, in its storage, and a URL holds a password (a webhook URL
    a token). A hardcoded resource has no config to store."""
    if settings.landing_dir is None and needs_landing:
        raise ValueError("set LANDING_DIR to the folder where CRM exports land")
    given = dg.ResourceDefinition.hardcoded_resource
    return {
        "database": given(PlatformDatabase(url=database_url)),
        "landing": given(LandingFolder(path=str(settings.landing_dir or ""))),
        "alert_webhook": given(AlertWebhook(webhook_url=settings.alert_webhook_url)),
        "dbt": dbt_cli(),
    }
