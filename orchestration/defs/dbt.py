"""Every dbt model (and its tests, as asset checks) as Dagster assets."""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.dbt_project import TRANSLATOR, manifest_path
from orchestration.resources import PlatformDatabase


@dbt_assets(
    manifest=manifest_path(),
    dagster_dbt_translator=TRANSLATOR,
    pool="attribution_database",
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, database: PlatformDatabase):
    """`dbt build` of the selected models: incremental by default (docs/attribution.md)."""
    with database.dbt_environment():
        invocation = dbt.cli(["build"], context=context)
    yield from invocation.stream()
