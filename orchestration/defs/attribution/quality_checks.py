"""Input-data asset checks (great-expectations 1.x, in the database): one per expectation,
on the tables the marts read (orchestration/quality.py, docs/data-quality.md).

Every result says how many rows were checked (`element_count`: the table's rows),
how many fail (`unexpected_count`) and their share (`unexpected_percent`). A
failing check names the organizations whose rows fail, with sample ids
(`failing_rows`, a Markdown table; `failing_organizations`,
`failures_by_organization`); an expectation that could not be evaluated fails
with the error instead of stopping the run.
"""

from typing import Any

import dagster as dg

from orchestration.quality import EXPECTATIONS, Outcome, validate_table
from orchestration.resources import PlatformDatabase


def check_result(asset: dg.AssetKey, outcome: Outcome) -> dg.AssetCheckResult:
    metadata: dict[str, Any] = {
        "element_count": outcome.element_count,
        "unexpected_count": outcome.unexpected_count,
        "unexpected_percent": outcome.unexpected_percent,
    }
    description = None
    if outcome.exception:
        metadata["evaluation_error"] = outcome.exception
        description = f"could not be evaluated: {outcome.exception}"
    if outcome.failures is not None:
        metadata.update(outcome.failures.metadata())
        description = "; ".join(filter(None, [description, outcome.failures.text()]))
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=outcome.name,
        passed=outcome.success,
        severity=dg.AssetCheckSeverity.ERROR if outcome.error else dg.AssetCheckSeverity.WARN,
        metadata=metadata,
        description=description,
    )


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
            yield check_result(asset, outcome)

    return check


quality_checks = [_quality_check(schema, table) for schema, table in EXPECTATIONS]
