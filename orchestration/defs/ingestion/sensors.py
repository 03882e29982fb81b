"""The landing sensor: starts a load when files land that the ledger has not loaded.

A tick's work and its cursor stay bounded however many files ever landed
(docs/ingestion.md, "How the landing sensor watches the folder"). A tick lists the
folder (one `lstat` per entry, nothing opened) and looks further only at entries
whose ctime is past the cursor's watermark, plus the few the cursor holds as not
yet loaded: those are looked up in the ledger, and hashed only when their size and
times are not the ones the ledger recorded when it loaded them.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psycopg

from ingestion.discovery import SETTLE_NS, FileSignature, Listed, inspect, list_entries
from ingestion.loader import ledger_hash
from orchestration.defs.attribution.jobs import ingest_and_attribute_job
from orchestration.defs.ingestion.jobs import ingest_job
from orchestration.resources import LandingFolder, PlatformDatabase
from platform_core.database import connect

# The landing sensor ticks often: a won deal must reach fct_partner_attribution within
# 30 s at p95 (docs/contract.md §7), and a quiet tick is a folder listing and one
# indexed ledger query. Alert sensors can wait.
LANDING_SENSOR_INTERVAL_SECONDS = 2
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
CURSOR_VERSION = 2
# Names kept of the entries stamped exactly at the watermark (a bulk copy can stamp
# many files in one clock tick): past this many characters the watermark stays one
# nanosecond below them and they are checked again next tick (in the ledger, unread).
AT_WATERMARK_CHARS = 512


@dataclass
class LandingCursor:
    """What the sensor remembers between ticks; stored as JSON (`dumps`).

    Every entry whose ctime is at most `watermark_ns` has been looked at — those
    stamped exactly at it only if named in `at_watermark`. Entries looked at and not
    in the ledger yet wait in `pending` (name → [size, mtime_ns, ctime_ns, sha256 or
    None when the times were too fresh to trust]) and are looked at every tick until
    the ledger has them or they are gone. The whole folder is looked at afresh when
    it is another folder (`folder`, its device:inode, changed) or the ledger went
    back (its newest batch id is below `ledger_top`: a restored backup).
    """

    folder: str | None = None
    watermark_ns: int = -1
    at_watermark: frozenset[str] = frozenset()
    pending: dict[str, list] = field(default_factory=dict)
    ledger_top: int = 0
    # From a cursor of the first format (name → [size, mtime_ns, sha256, entity] of
    # every file ever seen): hashes reused, by size and mtime, by the converting tick.
    legacy: dict[str, tuple[int, int, str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str | None) -> LandingCursor:
        data = json.loads(text) if text else {}
        if not isinstance(data, dict):
            return cls()
        if data.get("v") == CURSOR_VERSION:
            return cls(
                data["folder"],
                data["watermark_ns"],
                frozenset(data["at_watermark"]),
                data["pending"],
                data["ledger_top"],
            )
        legacy = {
            name: (known[0], known[1], known[2])
            for name, known in data.items()
            if isinstance(known, list) and len(known) >= 3 and isinstance(known[2], str)
        }
        return cls(legacy=legacy)

    def dumps(self) -> str:
        return json.dumps(
            {
                "v": CURSOR_VERSION,
                "folder": self.folder,
                "watermark_ns": self.watermark_ns,
                "at_watermark": sorted(self.at_watermark),
                "pending": self.pending,
                "ledger_top": self.ledger_top,
            },
            separators=(",", ":"),
        )


@dataclass(frozen=True)
class NewFile:
    content_hash: str  # the ledger's key with the name (a stand-in for special entries)
    entity: str | None


@dataclass
class LandingScan:
    """One tick's look at the folder."""

    cursor: LandingCursor
    new: dict[str, NewFile]  # not in the ledger: the run to request loads these
    listed: int  # entries in the folder
    checked: list[str]  # names looked up in the ledger
    read: list[str]  # names whose content was hashed


def _folder_identity(folder: Path) -> str:
    st = folder.stat()
    return f"{st.st_dev}:{st.st_ino}"


def _ledger_top(conn: psycopg.Connection) -> int:
    (top,) = conn.execute("select coalesce(max(batch_id), 0) from raw.ingest_batches").fetchone()
    return top


def _ledger(
    conn: psycopg.Connection, names: list[str]
) -> dict[str, list[tuple[str, FileSignature | None]]]:
    """name → [(content_hash, signature recorded at load or None)] of every version."""
    if not names:
        return {}
    rows = conn.execute(
        "select file_name, content_hash, file_size, file_mtime_ns, file_ctime_ns"
        " from raw.ingest_batches where file_name = any(%s)",
        [names],
    ).fetchall()
    ledger: dict[str, list[tuple[str, FileSignature | None]]] = {}
    for name, content_hash, size, mtime_ns, ctime_ns in rows:
        signature = FileSignature(size, mtime_ns, ctime_ns) if ctime_ns is not None else None
        ledger.setdefault(name, []).append((content_hash, signature))
    return ledger


def _known_hash(entry: Listed, cursor: LandingCursor) -> str | None:
    """The hash the cursor holds for `entry`, if its size and times say it is unchanged."""
    pending = cursor.pending.get(entry.name)
    if pending and pending[3] and tuple(pending[:3]) == entry.signature:
        return pending[3]
    legacy = cursor.legacy.get(entry.name)
    if legacy and legacy[:2] == (entry.signature.size, entry.signature.mtime_ns):
        return legacy[2]
    return None


def _watermark(
    entries: list[Listed], cursor: LandingCursor, settled_ns: int
) -> tuple[int, frozenset[str]]:
    """The newest settled ctime (all entries up to it have now been looked at) and
    the names stamped exactly at it, kept short (AT_WATERMARK_CHARS)."""
    top = max(
        (e.signature.ctime_ns for e in entries if e.signature.ctime_ns <= settled_ns),
        default=cursor.watermark_ns,
    )
    top = max(top, cursor.watermark_ns)
    for mark in (top, top - 1):
        names = frozenset(e.name for e in entries if e.signature.ctime_ns == mark)
        if sum(len(name) + 3 for name in names) <= AT_WATERMARK_CHARS:
            return mark, names
    return cursor.watermark_ns, cursor.at_watermark


def scan_landing(conn: psycopg.Connection, folder: Path, cursor: LandingCursor) -> LandingScan:
    """Which entries of `folder` the ledger does not have, looking only at what is new.

    An entry is looked at when its ctime is past the watermark (any change to a
    file sets its ctime to the current time: a write, a rename or copy into the
    folder, also with an old mtime kept by `cp -p` or `rsync -a`) or when it
    waits in the cursor to be loaded. The watermark only moves up to times older
    than SETTLE_NS, so a file changed again within the same clock tick as it was
    hashed is looked at once more.
    """
    now_ns = time.time_ns()  # before listing: anything changed later is newer than this
    identity = _folder_identity(folder)
    ledger_top = _ledger_top(conn)
    # First tick, a first-format cursor, another folder, or a ledger restored from a
    # backup (files the cursor saw loaded may be unknown to it now): look at everything.
    if cursor.folder != identity or ledger_top < cursor.ledger_top:
        cursor = LandingCursor(folder=identity, legacy=cursor.legacy)
    entries = list_entries(folder)
    mark, at_mark = cursor.watermark_ns, cursor.at_watermark
    candidates = [
        e
        for e in entries
        if e.signature.ctime_ns > mark
        or (e.signature.ctime_ns == mark and e.name not in at_mark)
        or e.name in cursor.pending
    ]
    ledger = _ledger(conn, [e.name for e in candidates])
    new: dict[str, NewFile] = {}
    pending: dict[str, list] = {}
    read: list[str] = []
    for entry in candidates:
        versions = ledger.get(entry.name, [])
        if any(signature == entry.signature for _, signature in versions):
            continue  # unchanged since the ledger recorded it: not opened
        landing = inspect(folder / entry.os_name, entry.mode, entry.signature)
        if landing.unread is not None:
            # A link, pipe, folder... is never opened: its stand-in hash, so the run
            # it starts records its refusal.
            content_hash = landing.unread.ledger_hash
        elif (content_hash := _known_hash(entry, cursor)) is None:
            try:
                content_hash = ledger_hash(landing)  # reads a regular file only
            except FileNotFoundError:  # removed since it was listed
                continue
            read.append(entry.name)
        if any(known == content_hash for known, _ in versions):
            continue
        new[entry.name] = NewFile(content_hash, landing.entity.name if landing.entity else None)
        trusted = content_hash if entry.signature.settled(now_ns) else None
        pending[entry.name] = [*entry.signature, trusted]
    mark, at_mark = _watermark(entries, cursor, now_ns - SETTLE_NS)
    return LandingScan(
        LandingCursor(identity, mark, at_mark, pending, ledger_top),
        new,
        listed=len(entries),
        checked=[e.name for e in candidates],
        read=read,
    )


@dg.sensor(
    jobs=[ingest_job, ingest_and_attribute_job],
    minimum_interval_seconds=LANDING_SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts `ingest` when files land that the ledger has not loaded (by content"
    " hash); `ingest_and_attribute` when deals or touchpoints are among them. Looks only at"
    " files changed since its watermark (their ctime) and at those waiting to be loaded.",
)
def landing_sensor(
    context: dg.SensorEvaluationContext, database: PlatformDatabase, landing: LandingFolder
):
    if not landing.directory.is_dir():
        return dg.SkipReason(f"landing folder {landing.directory} does not exist")
    if context.instance.get_runs(
        filters=dg.RunsFilter(tags=LANDING_RUN_TAG, statuses=WAITING), limit=1
    ):
        # That run loads every file in the folder when it starts: batching the files
        # that land while a build runs keeps the queue one run long (latency, docs/contract.md §7).
        # The cursor stays as it is: the next tick looks at these files.
        return dg.SkipReason("a landing run waiting to start will load these files too")
    with connect(database.url) as conn:
        scan = scan_landing(conn, landing.directory, LandingCursor.parse(context.cursor))
    context.update_cursor(scan.cursor.dumps())
    if not scan.new:
        return dg.SkipReason(
            f"no new or changed landing files ({scan.listed:,} listed,"
            f" {len(scan.checked):,} checked, {len(scan.read):,} read)"
        )
    # The same files always give the same run key: a file never triggers two loads.
    # A failed load is retried (a new key per failure), a few times at most.
    new = sorted(f"{name}:{file.content_hash}" for name, file in scan.new.items())
    files_hash = hashlib.sha256("\n".join(new).encode()).hexdigest()
    earlier = context.instance.get_runs(filters=dg.RunsFilter(tags={"landing_hash": files_hash}))
    if any(run.status not in FINISHED for run in earlier):
        return dg.SkipReason("an ingest run for these files is queued or running")
    if any(run.status == dg.DagsterRunStatus.SUCCESS for run in earlier):
        return dg.SkipReason("these files were ingested; the ledger shows what was refused")
    if len(earlier) > MAX_INGEST_RETRIES:
        return dg.SkipReason(f"ingest of these files failed {len(earlier)} times; see those runs")
    entities = {file.entity for file in scan.new.values()}
    job = ingest_and_attribute_job if entities & ATTRIBUTION_INPUTS else ingest_job
    return dg.RunRequest(
        run_key=f"{files_hash}-{len(earlier)}",
        job_name=job.name,
        tags={"landing_hash": files_hash, "landing_files": str(len(new)), **LANDING_RUN_TAG},
    )
