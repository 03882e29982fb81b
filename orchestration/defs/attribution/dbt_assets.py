"""Every dbt model (and its tests, as asset checks) as Dagster assets.

The models are built first, then the data tests run (two dbt invocations in the
one op, both under the build lock). A data test that fails — for one
organization's rows, say — therefore never skips a model: every organization's
marts are built, and the failing check names the organizations and sample ids
of its failing rows. Unit tests (fixed inputs, no data) still run before their
model and gate it.
"""

from collections.abc import Iterator

import dagster as dg
from dagster_dbt import DbtCliInvocation, DbtCliResource, dbt_assets
from pydantic import Field

from orchestration.dbt_project import TRANSLATOR, explain_test_failures, manifest_path
from orchestration.quality import FailureSummary
from orchestration.resources import PlatformDatabase
from orchestration.retries import DATABASE_RETRY, classify
from platform_core.connections import is_transient_text

# Phase 1: models, seeds, snapshots and unit tests; phase 2: the data tests.
BUILD_MODELS = ["build", "--exclude-resource-type", "test"]
# `build` restricted to data tests rather than `dbt test`: `attribution-dbt` runs it
# under the build lock, so the tests never read a build half-way (another run's).
RUN_DATA_TESTS = ["build", "--resource-type", "test"]
FULL_REFRESH = "--full-refresh"


class DbtModelsConfig(dg.Config):
    """Run config of `dbt_models` (the op of every dbt asset)."""

    full_refresh: bool = Field(
        default=False,
        description="Rebuild the incremental models from scratch (dbt --full-refresh):"
        " `attribution run --full-refresh`. Only the models' invocation: the data tests"
        " read what it built either way.",
    )


# A run without data tests (the landing run: the way to fct_partner_attribution,
# docs/orchestration.md "Latency") skips the unit tests too; the catch-up and daily
# runs still run them before their models.
SKIP_UNIT_TESTS = ["--exclude-resource-type", "unit_test"]


def models_args(config: DbtModelsConfig, with_tests: bool = True) -> list[str]:
    return [
        *BUILD_MODELS,
        *([] if with_tests else SKIP_UNIT_TESTS),
        *([FULL_REFRESH] if config.full_refresh else []),
    ]


@dbt_assets(
    manifest=manifest_path(),
    dagster_dbt_translator=TRANSLATOR,
    pool="attribution_database",
    retry_policy=DATABASE_RETRY,
)
def dbt_models(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    database: PlatformDatabase,
    config: DbtModelsConfig,
):
    """The selected models (incremental by default, docs/attribution.md; a full
    refresh with run config `full_refresh: true`), then their data tests.

    dbt runs as `attribution-dbt`, under the database's build lock; a build that
    failed because the server went away is retried (incremental models are
    idempotent). A failing data test fails its asset check, not the step.
    """
    # Each invocation's events are handed to Dagster once dbt has finished (its log
    # still streams). Dagster writes every event to its storage, on the platform's
    # server: a write under way when that server restarts fails the step in
    # Dagster's own code, which no retry policy covers; dbt's failure is retried.
    with_tests = bool(context.selected_asset_check_keys)
    args = models_args(config, with_tests)
    context.log.info(f"dbt models: {' '.join(args)}")
    models = dbt.cli(args, context=context, raise_on_error=False)
    yield from list(models.stream())
    error = models.get_error()
    if error is not None:  # a model failed: its downstream models were skipped
        raise classify(error, getattr(error, "description", None)) from None

    if not with_tests:
        # A run without the tests' checks (the landing run): no second dbt start-up.
        return
    tests = dbt.cli(RUN_DATA_TESTS, context=context, raise_on_error=False)
    events = list(tests.stream())
    error = tests.get_error()
    description = getattr(error, "description", None) or ""
    checked = [e for e in events if isinstance(e, dg.AssetCheckResult)]
    # A failing test is its check's business. But the server going away mid-tests
    # is retried, and a test invocation that tested nothing (it could not start) fails.
    if error is not None and (is_transient_text(description) or not checked):
        raise classify(error, description) from None
    failed = [e for e in checked if not e.passed]
    yield from (e for e in events if not (isinstance(e, dg.AssetCheckResult) and not e.passed))
    yield from explain_failed_tests(tests, failed, database.url)


def explain_failed_tests(
    invocation: DbtCliInvocation, failed: list[dg.AssetCheckResult], url: str
) -> Iterator[dg.AssetCheckResult]:
    """Each failed test's check result, with the organizations and ids it fails for."""
    if not failed:
        return
    try:
        results = invocation.get_artifact("run_results.json")["results"]
    except (OSError, ValueError, KeyError):
        results = []
    wanted = {_text(event.metadata.get("unique_id")) for event in failed}
    summaries = explain_test_failures(
        url, invocation.manifest, [r for r in results if r.get("unique_id") in wanted]
    )
    for event in failed:
        unique_id = _text(event.metadata.get("unique_id")) or ""
        summary = summaries.get(unique_id) or FailureSummary(error="no result for this test")
        yield dg.AssetCheckResult(
            asset_key=event.asset_key,
            check_name=event.check_name,
            passed=False,
            severity=event.severity,
            metadata={**event.metadata, **summary.metadata()},
            description=summary.text(),
        )


def _text(value: object) -> str | None:
    return getattr(value, "value", value) if value is not None else None  # type: ignore[return-value]
