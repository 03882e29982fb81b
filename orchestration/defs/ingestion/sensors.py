"""The landing sensor: starts a load when files land that the ledger has not loaded."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from ingestion.discovery import discover
from ingestion.loader import ledger_hash
from orchestration.defs.attribution.jobs import ingest_and_attribute_job
from orchestration.defs.ingestion.jobs import ingest_job
from orchestration.resources import LandingFolder, PlatformDatabase
from platform_core.database import connect

# The two sensors that start work tick often: a won deal must reach the marts within
# a minute (docs/contract.md §7), and each tick is one cheap ledger query. Alert sensors can wait.
PIPELINE_SENSOR_INTERVAL_SECONDS = 5
# New files of these entities can change attribution: load and build in one run.
ATTRIBUTION_INPUTS = {"deals", "touchpoints"}
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
        # that land while a build runs keeps the queue one run long (latency, docs/contract.md §7).
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
