"""The dbt project as Dagster sees it: one translator for keys, groups and owners."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
)

from attribution.dbt import DBT_PROJECT_DIR, dbt_executable

DBT_PROJECT = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

# dbt folder → Dagster group.
GROUPS = {"staging": "staging", "intermediate": "attribution", "marts": "marts"}
DEFAULT_OWNER = "team:data-platform"


class AttributionTranslator(DagsterDbtTranslator):
    """Keys are <schema>/<name> (sources: raw/<table>, so they connect to the
    ingestion assets); groups follow the dbt folder; owners come from `meta.owner`."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey(["raw", dbt_resource_props["name"]])
        return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return "ingestion"
        folder = dbt_resource_props["fqn"][1] if len(dbt_resource_props["fqn"]) > 2 else None
        return GROUPS.get(folder or "", "attribution")

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        owner = (dbt_resource_props.get("config", {}).get("meta") or {}).get("owner")
        return [owner or DEFAULT_OWNER]


TRANSLATOR = AttributionTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def manifest_path() -> Path:
    """target/manifest.json, parsed anew when a model, macro or YAML file is newer."""
    manifest = DBT_PROJECT.manifest_path
    sources = [p for p in DBT_PROJECT_DIR.rglob("*") if p.suffix in (".sql", ".yml")
               and "target" not in p.parts and "logs" not in p.parts]  # fmt: skip
    newest = max((p.stat().st_mtime for p in sources), default=0)
    if not manifest.exists() or manifest.stat().st_mtime < newest:
        DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=dbt_executable()).cli(
            ["parse", "--quiet"], target_path=manifest.parent
        ).wait()
    return manifest


def dbt_cli() -> DbtCliResource:
    return DbtCliResource(project_dir=DBT_PROJECT, dbt_executable=dbt_executable())
