"""Automated backups: the `database_backup` job on BACKUP_CRON, and the restore drill.

The backup is recorded on `platform/database_backup` (group platform): each run
reports a materialization carrying the backup's path, size, duration and
databases, so the UI shows their history. That asset is declared as a spec the
job reports on, not as an asset it materializes: `daily_refresh` selects every
materializable asset, and a backup inside every refresh (and every test of it) is
not what anyone wants.

The restore drill is the asset check `restore_drill` on it: it runs in the
backup's own run right after the backup (so each backup is proved when it is
made), and in its own job `backup_restore_drill` every day at 12:00 UTC — that
one catches backups that stopped being made. It fails with ERROR severity, which
the `failed_check_alert` sensor posts.

BACKUP_CRON is read when the definitions load (a schedule's cron is part of its
definition, it cannot come from run config); BACKUP_DIR and BACKUP_KEEP are read
when a run starts, and a run's config may override them.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._utils.schedules import cron_string_iterator, is_valid_cron_string

from orchestration.resources import PlatformDatabase
from platform_core.backup import DrillReport, restore_drill, rotated_backup
from platform_core.settings import Settings

BACKUP_ASSET = dg.AssetSpec(
    key=["platform", "database_backup"],
    group_name="platform",
    kinds={"postgres"},
    owners=["team:data-platform"],
    description=(
        "Logical backup of the platform and Dagster databases and the roles"
        " (docs/reliability.md#automated-backups), written by the job database_backup."
    ),
)
DRILL_CHECK = "restore_drill"
DRILL_CRON = "0 12 * * *"
# How late a backup may be past its schedule's longest interval before the drill fails.
GRACE = timedelta(hours=2)


def backup_cron(settings: Settings) -> str:
    """BACKUP_CRON, refused with a message naming it (Dagster's own error would not)."""
    if not is_valid_cron_string(settings.backup_cron):
        raise ValueError(
            f"BACKUP_CRON={settings.backup_cron!r} is not a five-field cron schedule"
            " (e.g. '0 2 * * *')"
        )
    return settings.backup_cron


def max_backup_age(cron: str) -> timedelta:
    """The longest gap between two ticks of `cron` (UTC) over the next 1000 ticks or a
    year, plus GRACE: 26 hours for a daily backup."""
    start = datetime.now(UTC)
    longest, previous = timedelta(0), None
    for count, tick in enumerate(cron_string_iterator(start.timestamp(), cron, "UTC")):
        if previous is not None:
            longest = max(longest, tick - previous)
        if count >= 1000 or tick - start > timedelta(days=366):
            break
        previous = tick
    return longest + GRACE


class BackupConfig(dg.Config):
    """Overrides for one run; empty / 0: BACKUP_DIR and BACKUP_KEEP (docs/configuration.md)."""

    folder: str = ""
    keep: int = 0


class DrillConfig(dg.Config):
    """Overrides for one run; empty / 0: BACKUP_DIR, and BACKUP_CRON's longest interval
    plus 2 hours."""

    folder: str = ""
    max_age_hours: float = 0.0


def _run_drill(database: PlatformDatabase, config: DrillConfig) -> DrillReport:
    settings = Settings.from_environment()
    root = Path(config.folder) if config.folder else settings.backup_root
    if config.max_age_hours > 0:
        max_age = timedelta(hours=config.max_age_hours)
    else:
        max_age = max_backup_age(backup_cron(settings))
    return restore_drill(database.url, root, max_age)


def _result_fields(report: DrillReport) -> dict[str, Any]:
    """The drill as the fields of an AssetCheckResult (or AssetCheckEvaluation)."""
    findings = report.problems + report.mismatches
    if report.passed:
        description = (
            f"{report.backup.name if report.backup else ''} restored into a scratch database:"
            f" {report.tables_compared} tables, {report.rows_compared:,} rows, as counted at backup"
        )
    else:
        more = f" (and {len(findings) - 5} more)" if len(findings) > 5 else ""
        description = "; ".join(findings[:5]) + more

    def listed(items: list[str]) -> dg.MetadataValue:
        return dg.MetadataValue.md("\n".join(f"- {item}" for item in items) or "none")

    return {
        "passed": report.passed,
        "severity": dg.AssetCheckSeverity.ERROR,
        "description": description[:2000],
        "metadata": {
            "backup": str(report.backup) if report.backup else "none",
            "backup_created_at": report.created_at or "none",
            "backup_age_hours": report.age_hours if report.age_hours is not None else -1.0,
            "drill_seconds": report.seconds,
            "databases": ", ".join(report.databases) or "none",
            "tables_compared": report.tables_compared,
            "rows_compared": report.rows_compared,
            "mismatch_count": len(report.mismatches),
            "mismatches": listed(report.mismatches),
            "problems": listed(report.problems),
        },
    }


@dg.op(
    description="Writes a backup into BACKUP_DIR/backup-<UTC time> and keeps the newest BACKUP_KEEP.",
)
def write_database_backup(
    context: dg.OpExecutionContext, config: BackupConfig, database: PlatformDatabase
) -> str:
    settings = Settings.from_environment()
    root = Path(config.folder) if config.folder else settings.backup_root
    keep = config.keep or settings.backup_keep
    done = rotated_backup(database.url, root, keep)
    databases = done.manifest["databases"]
    context.log.info(
        f"backup {done.folder} written in {done.manifest['duration_s']} s;"
        f" {len(done.removed)} old or unfinished backups removed (keeping {keep})"
    )
    context.log_event(
        dg.AssetMaterialization(
            asset_key=BACKUP_ASSET.key,
            description=f"backup {done.folder.name}",
            metadata={
                "path": dg.MetadataValue.path(str(done.folder)),
                "size_bytes": done.size_bytes,
                "size_mb": round(done.size_bytes / 1e6, 2),
                "duration_seconds": float(done.manifest["duration_s"]),  # type: ignore[arg-type]
                "databases": ", ".join(f"{d['purpose']}: {d['name']}" for d in databases),
                "tables": sum(len(d["row_counts"]) for d in databases),
                "rows": sum(sum(d["row_counts"].values()) for d in databases),
                "skipped": ", ".join(done.manifest["skipped"]) or "none",  # type: ignore[arg-type]
                "kept": keep,
                "removed": ", ".join(p.name for p in done.removed) or "none",
            },
        )
    )
    return str(done.folder)


@dg.op(description="The restore drill of the backup just written (the check restore_drill).")
def drill_new_backup(
    context: dg.OpExecutionContext, folder: str, database: PlatformDatabase
) -> None:
    """Reports its result as an evaluation of the check `restore_drill`, so the check's
    history holds every drill, whichever job ran it."""
    report = _run_drill(database, DrillConfig(folder=str(Path(folder).parent)))
    latest = context.instance.fetch_materializations(BACKUP_ASSET.key, limit=1).records
    target = (
        AssetCheckEvaluationTargetMaterializationData(
            storage_id=latest[0].storage_id, run_id=latest[0].run_id, timestamp=latest[0].timestamp
        )
        if latest
        else None
    )
    context.log_event(
        dg.AssetCheckEvaluation(
            asset_key=BACKUP_ASSET.key,
            check_name=DRILL_CHECK,
            target_materialization_data=target,
            **_result_fields(report),
        )
    )


@dg.job(
    description="Backs up the platform and Dagster databases (BACKUP_DIR, BACKUP_KEEP), then"
    " restores the backup into a scratch database to prove it (the check restore_drill).",
)
def database_backup():
    drill_new_backup(write_database_backup())


@dg.asset_check(
    asset=BACKUP_ASSET.key,
    name=DRILL_CHECK,
    description=(
        "Restores the latest backup into the scratch database attribution_restore_drill"
        " (dropped after) and compares every table's rows with the backup's manifest. ERROR"
        " when there is no backup, when it is older than BACKUP_CRON allows, when it does not"
        " restore or when a count differs."
    ),
)
def restore_drill_check(config: DrillConfig, database: PlatformDatabase) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(**_result_fields(_run_drill(database, config)))


backup_drill_job = dg.define_asset_job(
    "backup_restore_drill",
    selection=dg.AssetSelection.checks(restore_drill_check),
    description="The restore drill alone: catches backups that stopped being made.",
)

backup_schedule = dg.ScheduleDefinition(
    job=database_backup,
    cron_schedule=backup_cron(Settings.from_environment()),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="BACKUP_CRON (UTC; default 02:00, after the 01:00 daily_refresh).",
)

backup_drill_schedule = dg.ScheduleDefinition(
    job=backup_drill_job,
    cron_schedule=DRILL_CRON,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="The restore drill at 12:00 UTC, whether or not a backup ran.",
)
