"""Ingestion assets: one per raw table, all materialized by one load of the landing folder.

Every run materializes every raw table, files or not: the dbt build depends on
them, and Dagster skips a step whose upstream output was not yielded — a run that
brought no partners file would then build no model at all. What a run did to a
table is in its metadata instead, the way Dagster's built-ins read it:
`dagster/last_updated_timestamp` is when rows of that table were last loaded (from
the ledger, so a load by `attribution ingest` counts too), which the built-in
freshness check of `raw/deals` reads (defs/attribution/checks.py); the data
version is the last batch that loaded rows, so a run that loaded nothing leaves it
unchanged.
"""

from collections import defaultdict
from typing import Any

import dagster as dg

from ingestion import ingest_directory
from ingestion.contracts import ENTITIES
from orchestration.resources import LandingFolder, PlatformDatabase
from orchestration.retries import DATABASE_RETRY, classify
from platform_core.database import connect

RAW_TABLE_KEYS = {entity.name: dg.AssetKey(["raw", entity.name]) for entity in ENTITIES}
LEDGER_KEY = dg.AssetKey(["raw", "ingest_batches"])
QUARANTINE_KEY = dg.AssetKey(["raw", "quarantine"])
LAST_UPDATED = "dagster/last_updated_timestamp"  # read by Dagster's freshness checks


def last_loads(url: str) -> tuple[dict[str, tuple[float, int]], float | None]:
    """entity → (when the newest batch that loaded rows of it finished, that batch's id),
    and when the platform's database was created (its first migration)."""
    with connect(url) as conn:
        loads = conn.execute(
            "select entity, extract(epoch from max(finished_at))::float8, max(batch_id)"
            " from raw.ingest_batches"
            " where outcome = 'loaded' and rows_loaded > 0 and entity = any(%s)"
            " group by entity",
            [list(RAW_TABLE_KEYS)],
        ).fetchall()
        (created,) = conn.execute(
            "select extract(epoch from min(applied_at))::float8 from public.schema_migrations"
        ).fetchone()
    return {entity: (finished, batch) for entity, finished, batch in loads}, created


def freshness_metadata(
    load: tuple[float, int] | None, created: float | None
) -> tuple[dict[str, Any], dg.DataVersion]:
    """A raw table's last load as metadata and data version. Never loaded: the clock
    starts when the database was created, so a new platform has the freshness
    window to receive its first file, and then the check fails."""
    if load is None:
        metadata: dict[str, Any] = {"last_load": "no rows loaded yet"}
        if created is not None:
            metadata[LAST_UPDATED] = dg.MetadataValue.timestamp(created)
        return metadata, dg.DataVersion("no rows loaded")
    finished, batch = load
    return (
        {LAST_UPDATED: dg.MetadataValue.timestamp(finished), "last_load": f"batch {batch}"},
        dg.DataVersion(f"batch {batch}"),
    )


def _raw_spec(key: dg.AssetKey, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key,
        group_name="ingestion",
        kinds={"python", "postgres"},
        owners=["team:data-platform"],
        description=description,
    )


@dg.multi_asset(
    specs=[
        _raw_spec(
            key,
            f"raw.{name}: every version of every {name} row loaded from landing files."
            " Materialized by every load; `dagster/last_updated_timestamp` says when rows"
            " were last loaded.",
        )
        for name, key in RAW_TABLE_KEYS.items()
    ]
    + [
        _raw_spec(LEDGER_KEY, "raw.ingest_batches: the ledger, one row per landing file."),
        _raw_spec(QUARANTINE_KEY, "raw.quarantine: refused rows with file, line and reason."),
    ],
    can_subset=False,
    pool="attribution_database",
    retry_policy=DATABASE_RETRY,
)
def raw_tables(
    context: dg.AssetExecutionContext, database: PlatformDatabase, landing: LandingFolder
):
    """Load every new or changed file of the landing folder (docs/contract.md §3); a file is loaded once."""
    try:
        report = ingest_directory(database.url, landing.directory)
        loads, created = last_loads(database.url)
    except Exception as exc:  # noqa: BLE001 - classified: retried only when transient
        raise classify(exc) from None
    per_entity: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    files: dict[str, list[str]] = defaultdict(list)
    for result in report.files:
        if result.entity is None:
            continue
        stats = per_entity[result.entity]
        stats["files_loaded"] += result.status == "loaded"
        stats["files_refused"] += result.status == "refused"
        stats["rows_read"] += result.rows_read
        stats["rows_loaded"] += result.rows_loaded
        stats["rows_quarantined"] += result.rows_quarantined
        if result.status == "refused":
            files[result.entity].append(result.message or result.file_name)
    for line in report.lines():
        context.log.info(line)
    if not report.ok:
        # A file that cannot be read (permissions, a vanished disk) fails the same way
        # on every retry: the run stops at once and names the files.
        raise dg.Failure(
            description="some landing files could not be processed: " + "; ".join(report.errors),
            metadata={"errors": dg.MetadataValue.md("\n".join(f"- {e}" for e in report.errors))},
            allow_retries=False,
        )
    for name, key in RAW_TABLE_KEYS.items():
        stats = per_entity[name]
        metadata: dict[str, dg.RawMetadataValue] = {k: int(stats[k]) for k in (
            "files_loaded", "files_refused", "rows_read", "rows_loaded", "rows_quarantined")}  # fmt: skip
        if files[name]:
            metadata["refused_files"] = dg.MetadataValue.md(
                "\n".join(f"- {m}" for m in files[name])
            )
        last, version = freshness_metadata(loads.get(name), created)
        yield dg.MaterializeResult(
            asset_key=key, metadata={**metadata, **last}, data_version=version
        )
    yield dg.MaterializeResult(
        asset_key=LEDGER_KEY,
        metadata={
            "files_loaded": report.count("loaded"),
            "files_skipped": report.count("skipped"),
            "files_refused": report.count("refused"),
            "seconds": round(report.seconds, 2),
        },
    )
    yield dg.MaterializeResult(
        asset_key=QUARANTINE_KEY, metadata={"rows_quarantined": report.total("rows_quarantined")}
    )
