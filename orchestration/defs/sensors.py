"""Sensors: new landing files, newly won deals, and alerts."""

import hashlib
import json
from pathlib import Path

import dagster as dg
from dagster._core.events import DagsterEventType

from attribution.database import connect
from ingestion.discovery import discover
from ingestion.loader import ledger_hash
from orchestration.alerts import send_alert
from orchestration.defs.jobs import attribution_job, ingest_and_attribute_job, ingest_job
from orchestration.resources import AlertWebhook, LandingFolder, PlatformDatabase

# The two sensors that start work tick often: a won deal must reach the marts within
# a minute (SPEC §7), and each tick is one cheap ledger query. Alert sensors can wait.
PIPELINE_SENSOR_INTERVAL_SECONDS = 5
# New files of these entities can change attribution: load and build in one run.
ATTRIBUTION_INPUTS = {"deals", "touchpoints"}
SENSOR_INTERVAL_SECONDS = 30
MAX_INGEST_RETRIES = 3
# Runs this sensor starts carry this tag; dagster.yaml lets one of them run at a time,
# so the next one waits in the queue and loads everything that landed meanwhile.
LANDING_RUN_TAG = {"attribution/trigger": "landing"}
WAITING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
]
FINISHED = {
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
}


def _content_hashes(folder: Path, previous: dict[str, list]) -> dict[str, list]:
    """name → [size, mtime_ns, sha256, entity]; a file's hash is recomputed only when it changed."""
    current: dict[str, list] = {}
    # Links, pipes, folders too (never opened: ledger_hash reads regular files only),
    # so their refusal is recorded by the run they start.
    for landing in discover(folder, special_entries=True):
        entity = landing.entity.name if landing.entity else None
        try:
            stat = landing.path.lstat()
        except FileNotFoundError:  # removed since it was listed
            continue
        known = previous.get(landing.name)
        if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            current[landing.name] = [*known[:3], entity]
        else:
            current[landing.name] = [
                stat.st_size,
                stat.st_mtime_ns,
                ledger_hash(landing),
                entity,
            ]
    return current


@dg.sensor(
    jobs=[ingest_job, ingest_and_attribute_job],
    minimum_interval_seconds=PIPELINE_SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts `ingest` when files land that the ledger has not loaded (by content"
    " hash); `ingest_and_attribute` when deals or touchpoints are among them.",
)
def landing_sensor(
    context: dg.SensorEvaluationContext, database: PlatformDatabase, landing: LandingFolder
):
    previous = json.loads(context.cursor) if context.cursor else {}
    if not landing.directory.is_dir():
        return dg.SkipReason(f"landing folder {landing.directory} does not exist")
    hashes = _content_hashes(landing.directory, previous)
    if context.instance.get_runs(
        filters=dg.RunsFilter(tags=LANDING_RUN_TAG, statuses=WAITING), limit=1
    ):
        # That run loads every file in the folder when it starts: batching the files
        # that land while a build runs keeps the queue one run long (latency, SPEC §7).
        context.update_cursor(json.dumps(hashes))
        return dg.SkipReason("a landing run waiting to start will load these files too")
    with connect(database.url) as conn:
        known = set(
            conn.execute(
                "select file_name, content_hash from raw.ingest_batches where file_name = any(%s)",
                [list(hashes)],
            ).fetchall()
        )
    new = sorted(f"{name}:{h[2]}" for name, h in hashes.items() if (name, h[2]) not in known)
    context.update_cursor(json.dumps(hashes))
    if not new:
        return dg.SkipReason("no new or changed landing files")
    # The same files always give the same run key: a file never triggers two loads.
    # A failed load is retried (a new key per failure), a few times at most.
    files_hash = hashlib.sha256("\n".join(new).encode()).hexdigest()
    earlier = context.instance.get_runs(filters=dg.RunsFilter(tags={"landing_hash": files_hash}))
    if any(run.status not in FINISHED for run in earlier):
        return dg.SkipReason("an ingest run for these files is queued or running")
    if any(run.status == dg.DagsterRunStatus.SUCCESS for run in earlier):
        return dg.SkipReason("these files were ingested; the ledger shows what was refused")
    if len(earlier) > MAX_INGEST_RETRIES:
        return dg.SkipReason(
            f"ingest of these files failed {len(earlier)} times; see the failed runs"
        )
    entities = {hashes[name][3] for name in (n.rsplit(":", 1)[0] for n in new)}
    job = ingest_and_attribute_job if entities & ATTRIBUTION_INPUTS else ingest_job
    return dg.RunRequest(
        run_key=f"{files_hash}-{len(earlier)}",
        job_name=job.name,
        tags={"landing_hash": files_hash, "landing_files": str(len(new)), **LANDING_RUN_TAG},
    )


@dg.sensor(
    job=attribution_job,
    minimum_interval_seconds=PIPELINE_SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts `attribution` when won deal versions arrive in raw.deals.",
)
def won_deals_sensor(context: dg.SensorEvaluationContext, database: PlatformDatabase):
    last_batch = int(context.cursor or 0)
    with connect(database.url) as conn:
        newest, won = conn.execute(
            "select max(batch_id), count(*) filter (where status = 'won')"
            " from raw.deals where batch_id > %s",
            [last_batch],
        ).fetchone()
        if newest is None:
            return dg.SkipReason("no new deal batches")
        if won and _build_under_way(context.instance):
            # Look again when it has finished (the cursor stays): then the backlog says
            # whether that build took these deals in.
            return dg.SkipReason("a build of the marts is queued or running")
        pending = won
        if conn.execute("select to_regclass('marts.attribution_backlog')").fetchone()[0]:
            (pending,) = conn.execute("select count(*) from marts.attribution_backlog").fetchone()
    # The cursor is kept in Dagster's storage; the run key makes a retried tick harmless.
    context.update_cursor(str(newest))
    if not won:
        return dg.SkipReason(f"deal batches up to {newest} hold no won deals")
    if not pending:  # e.g. `ingest_and_attribute` loaded and attributed them in one run
        return dg.SkipReason(f"won deals up to batch {newest} are already in the marts")
    return dg.RunRequest(
        run_key=f"won-deals-through-batch-{newest}", tags={"won_deal_versions": str(won)}
    )


BUILD_JOBS = ("ingest_and_attribute", "attribution", "daily_refresh")
UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _build_under_way(instance: dg.DagsterInstance) -> bool:
    return any(
        instance.get_runs(filters=dg.RunsFilter(job_name=job, statuses=UNFINISHED), limit=1)
        for job in BUILD_JOBS
    )


@dg.run_failure_sensor(
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts failed runs to ALERT_WEBHOOK_URL (and logs them).",
)
def run_failure_alert(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook):
    run = context.dagster_run
    send_alert(
        alert_webhook.url(),
        f"Run failed: {run.job_name}",
        [f"run id: {run.run_id}", f"error: {context.failure_event.message or 'see the run logs'}"],
    )


@dg.sensor(
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts failed error-severity asset checks to ALERT_WEBHOOK_URL (and logs them).",
)
def failed_check_alert(context: dg.SensorEvaluationContext, alert_webhook: AlertWebhook):
    after = int(context.cursor) if context.cursor else None
    records = context.instance.get_event_records(
        dg.EventRecordsFilter(
            event_type=DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after
        ),
        ascending=True,
        limit=500,
    )
    if not records:
        return dg.SkipReason("no new check results")
    failed = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed.append(f"{evaluation.asset_key.to_user_string()} · {evaluation.check_name}")
    context.update_cursor(str(records[-1].storage_id))
    if not failed:
        return dg.SkipReason(f"{len(records)} new check results, none failed with severity ERROR")
    send_alert(alert_webhook.url(), "Error-severity checks failed", failed)
    return dg.SkipReason(f"alerted on {len(failed)} failed checks")
