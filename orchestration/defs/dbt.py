"""Every dbt model (and its tests, as asset checks) as Dagster assets."""

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets
from dagster_dbt.errors import DagsterDbtCliRuntimeError

from orchestration.dbt_project import TRANSLATOR, manifest_path
from orchestration.resources import PlatformDatabase
from orchestration.retries import DATABASE_RETRY, classify


@dbt_assets(
    manifest=manifest_path(),
    dagster_dbt_translator=TRANSLATOR,
    pool="attribution_database",
    retry_policy=DATABASE_RETRY,
)
def dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, database: PlatformDatabase):
    """`dbt build` of the selected models: incremental by default (docs/attribution.md).

    dbt runs as `attribution-dbt`, under the database's build lock; a build that
    failed because the server went away is retried (incremental models are idempotent).
    """
    with database.dbt_environment():
        invocation = dbt.cli(["build"], context=context)
    try:
        yield from invocation.stream()
    except DagsterDbtCliRuntimeError as exc:
        raise classify(exc, exc.description) from None
