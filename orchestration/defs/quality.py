"""Data-quality asset checks (great-expectations 1.x, in the database): one per expectation."""

import dagster as dg

from orchestration.quality import EXPECTATIONS, validate_table
from orchestration.resources import PlatformDatabase


def _quality_check(schema: str, table: str) -> dg.AssetChecksDefinition:
    asset = dg.AssetKey([schema, table])
    expectations = EXPECTATIONS[(schema, table)]

    @dg.multi_asset_check(
        specs=[
            dg.AssetCheckSpec(e.name, asset=asset, description=e.description) for e in expectations
        ],
        name=f"quality_{table}",
    )
    def check(database: PlatformDatabase):
        for outcome in validate_table(database.url, schema, table):
            yield dg.AssetCheckResult(
                asset_key=asset,
                check_name=outcome.name,
                passed=outcome.success,
                severity=dg.AssetCheckSeverity.ERROR
                if outcome.error
                else dg.AssetCheckSeverity.WARN,
                metadata={
                    "unexpected_count": outcome.unexpected_count,
                    "element_count": outcome.element_count or 0,
                },
            )

    return check


quality_checks = [_quality_check(schema, table) for schema, table in EXPECTATIONS]
