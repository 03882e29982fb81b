"""Load landing files into raw tables: one file, one batch, one transaction.

Per batch (docs/contract.md §3): the ledger row, the rows routed by set-based validation to
`raw.<entity>` or `raw.quarantine`, and the final counts all commit together — or
not at all. The file itself is COPYed into a temporary landing table of a second
(staging) session; the routed rows come back from it by COPY, so they enter the raw
tables by COPY's bulk insert within the batch's transaction (docs/ingestion.md, Speed). A process killed at any
point leaves no partial batch; the next run finds the file unloaded and loads it.

Concurrency: every load takes one transaction-level advisory lock, so batches
commit one at a time and batch ids follow commit order. Two things rely on that:
"ties go to the version loaded last" (docs/contract.md §2) and the incremental dbt models,
which read "batches after N" and take the same lock in shared mode while they
note how far they got. The unique (file_name, content_hash) index makes a second
loader of the same file wait, then see it as already loaded.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import BinaryIO

import psycopg
from psycopg import sql

from ingestion import fastcsv
from ingestion.contracts import Entity
from ingestion.discovery import FileSignature, LandingFile, Unread, describe_unread
from ingestion.readers import (
    FileRefused,
    HashingReader,
    NotRegularFile,
    describe_decode_error,
    make_reader,
    open_regular,
    open_text,
    sha256_of,
)
from ingestion.validation import (
    LANDING_TABLE,
    LINE_NO,
    PARSE_ERROR,
    QUARANTINE_COLUMNS,
    RAW_TEXT,
    LineNumbers,
    landing_ddl,
    raw_copy_sql,
    rejected_rows_copy_sql,
    source_sql,
    valid_rows_copy_sql,
)
from platform_core import locks

# The dbt models take this lock in shared mode (macro lock_ingestion): same key.
# Waited for at most ATTRIBUTION_INGEST_LOCK_WAIT s; past it the error names the holder.
INGEST_LOCK = locks.INGESTION


def take_ingest_lock(conn: psycopg.Connection) -> None:
    """The ingestion lock, for the rest of `conn`'s open transaction."""
    locks.acquire(conn, INGEST_LOCK, "transaction")


@dataclass
class FileResult:
    """What happened to one landing file."""

    file_name: str
    entity: str | None
    status: str  # loaded | skipped | refused
    batch_id: int | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    message: str | None = None
    seconds: float = 0.0
    # Who parsed the file: "postgres" (COPY's CSV parser, the fast path) or "python".
    parser: str | None = None
    # For a skipped file: what the ledger says of it ("loaded" or "refused").
    earlier_outcome: str | None = None
    # Found by hash with trusted times its ledger row lacks: record_signatures adds them.
    unrecorded_signature: FileSignature | None = None

    def skip(self, batch_id: int, outcome: str) -> FileResult:
        """This file is already in the ledger as `batch_id`."""
        self.status, self.batch_id, self.earlier_outcome = "skipped", batch_id, outcome
        self.message = f"already {outcome} as batch {batch_id}"
        return self


class FileChangedDuringLoad(RuntimeError):
    """The file's bytes changed while we read it; it is left for the next run."""


def _already_loaded(conn: psycopg.Connection, file_name: str, content_hash: str) -> tuple | None:
    """(batch_id, outcome, file_mtime_ns, file_ctime_ns) of the ledger row, if any."""
    return conn.execute(
        "select batch_id, outcome, file_mtime_ns, file_ctime_ns from raw.ingest_batches"
        " where file_name = %s and content_hash = %s",
        [file_name, content_hash],
    ).fetchone()


def _times(signature: FileSignature | None) -> list[int | None]:
    """The ledger's file_mtime_ns, file_ctime_ns: empty unless the times can be trusted."""
    return [signature.mtime_ns, signature.ctime_ns] if signature else [None, None]


def record_signatures(conn: psycopg.Connection, results: list[FileResult]) -> int:
    """Add the trusted times of files found by hash to their ledger rows (rows of
    older versions, or loaded while the file's times were too fresh to trust, have
    none), so the next run skips these unchanged files unread. One statement for a
    whole run: a commit per file would cost more than the hashing."""
    found = [(r.batch_id, r.unrecorded_signature) for r in results if r.unrecorded_signature]
    if not found:
        return 0
    return conn.execute(
        """
        update raw.ingest_batches as batches
        set file_mtime_ns = seen.mtime_ns, file_ctime_ns = seen.ctime_ns
        from unnest(%s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[])
            as seen (batch_id, size, mtime_ns, ctime_ns)
        where batches.batch_id = seen.batch_id and batches.file_size = seen.size
        """,
        [
            [batch_id for batch_id, _ in found],
            [signature.size for _, signature in found],
            [signature.mtime_ns for _, signature in found],
            [signature.ctime_ns for _, signature in found],
        ],
    ).rowcount


def _record_refusal(
    conn: psycopg.Connection,
    landing: LandingFile,
    content_hash: str,
    started: datetime,
    message: str,
    size: int,
    signature: FileSignature | None = None,
) -> int | None:
    with conn.transaction():
        take_ingest_lock(conn)
        row = conn.execute(
            """
            insert into raw.ingest_batches
                (file_name, file_path, entity, file_format, content_hash, file_size,
                 file_mtime_ns, file_ctime_ns, started_at, finished_at, outcome, error_message)
            values (%s, %s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp(), 'refused', %s)
            on conflict (file_name, content_hash) do nothing
            returning batch_id
            """,
            [
                landing.name,
                landing.path_text,
                landing.entity.name if landing.entity else None,
                landing.file_format,
                content_hash,
                size,
                *_times(signature),
                started,
                message,
            ],
        ).fetchone()
    return row[0] if row else None


# Local buffers for the landing table (PostgreSQL's default is 8 MB): a batch that
# fits stays in memory instead of being written out and read back.
TEMP_BUFFERS = "256MB"
PIPE_BLOCK_BYTES = 1 << 18


def _copy_rows(
    conn: psycopg.Connection, entity: Entity, landing: LandingFile, hashing: HashingReader
) -> tuple[int, list[str]]:
    """Parse the file in Python and stream the rows into a new landing table;
    return (rows read, ignored columns)."""
    conn.execute(landing_ddl(entity))
    text = open_text(hashing)  # type: ignore[arg-type]
    reader = make_reader(entity, text, landing.name)
    columns = [LINE_NO, PARSE_ERROR, RAW_TEXT, *reader.present_fields]
    copy_sql = sql.SQL("copy {} ({}) from stdin").format(
        sql.Identifier(LANDING_TABLE), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    rows = 0
    with conn.cursor().copy(copy_sql) as copy:
        write = copy.write_row
        for rows, row in enumerate(reader, 1):  # noqa: B007 - rows is the count afterwards
            write(row)
    return rows, reader.ignored_columns


def _land(
    conn: psycopg.Connection, entity: Entity, landing: LandingFile, raw: BinaryIO
) -> tuple[int, list[str], sql.Composed, HashingReader, str]:
    """Fill the landing table: COPY's own CSV parser when it can, else the Python reader.

    `raw` is the file as opened once by load_file (each attempt reads it from its
    start). Returns rows read, ignored columns, the routing statements' source,
    the reader whose digest covers every byte that was loaded, and the parser used.
    """
    if landing.file_format == "csv":
        raw.seek(0)
        hashing = HashingReader(raw)
        try:
            with conn.transaction():  # a savepoint: giving up leaves no trace
                fast = fastcsv.copy_csv(conn, entity, landing.name, hashing)
        except (fastcsv.NotForFastPath, *fastcsv.PARSER_REJECTED):
            pass
        else:
            source = source_sql(entity, fast.line_numbers, fast.landed_columns)
            return fast.rows, fast.ignored_columns, source, hashing, "postgres"
    raw.seek(0)
    hashing = HashingReader(raw)
    try:
        rows_read, ignored = _copy_rows(conn, entity, landing, hashing)
    except UnicodeDecodeError:
        raise FileRefused(describe_decode_error(raw, landing.name)) from None
    return rows_read, ignored, source_sql(entity, LineNumbers.COLUMN), hashing, "python"


def open_staging(conn: psycopg.Connection) -> psycopg.Connection:
    """A second session to the same database, for the landing table (see load_file)."""
    staging = psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True)
    staging.execute("set timezone = 'UTC'")
    # ISO output: validation compares values with their text (validation._canonical).
    staging.execute("set datestyle = 'ISO, YMD'")
    # Local buffers for the landing table (the default is 8 MB): only settable
    # before the session's first temporary table.
    with contextlib.suppress(psycopg.errors.InvalidParameterValue):
        staging.execute(sql.SQL("set temp_buffers = {}").format(sql.Literal(TEMP_BUFFERS)))
    return staging


def _pipe(
    staging: psycopg.Connection,
    copy_out: sql.Composed,
    conn: psycopg.Connection,
    copy_in: sql.Composed,
) -> int:
    """Stream COPY TO STDOUT of `staging` into COPY FROM STDIN of `conn`; rows copied."""
    into_cursor = conn.cursor()
    with staging.cursor().copy(copy_out) as out, into_cursor.copy(copy_in) as into:
        # One message per row comes out; writing them in blocks saves calls.
        block = bytearray()
        for data in out:
            block += data
            if len(block) >= PIPE_BLOCK_BYTES:
                into.write(block)
                block = bytearray()
        if block:
            into.write(block)
    return into_cursor.rowcount


def _route(
    staging: psycopg.Connection,
    conn: psycopg.Connection,
    entity: Entity,
    source: sql.Composed,
    batch_id: int,
    rows_read: int,
    file_name: str,
) -> tuple[int, int]:
    """Valid rows to raw.<entity>, the others to raw.quarantine; (loaded, quarantined)."""
    loaded = _pipe(
        staging, valid_rows_copy_sql(entity, source, batch_id), conn, raw_copy_sql(entity)
    )
    if loaded == rows_read:  # a clean file needs no second pass
        return loaded, 0
    conn.execute(
        "create temporary table if not exists quarantine_landing"
        " (line_no bigint, record jsonb, raw_text text, reason text) on commit delete rows"
    )
    _pipe(
        staging,
        rejected_rows_copy_sql(entity, source),
        conn,
        sql.SQL("copy quarantine_landing ({}) from stdin").format(
            sql.SQL(", ").join(map(sql.Identifier, QUARANTINE_COLUMNS))
        ),
    )
    quarantined = conn.execute(
        """
        insert into raw.quarantine
            (batch_id, entity, source_file, line_no, record, raw_text, reason)
        select %s, %s, %s, line_no, record, raw_text, reason from quarantine_landing
        """,
        [batch_id, entity.name, file_name],
    ).rowcount
    return loaded, quarantined


def load_file(
    conn: psycopg.Connection, landing: LandingFile, staging: psycopg.Connection | None = None
) -> FileResult:
    """Load one file as one batch. `conn` must be in autocommit mode (we manage transactions).

    `staging` is a second session (open_staging) that holds the landing table and
    streams the routed rows back through COPY, so they enter the raw tables by
    COPY's bulk insert inside `conn`'s transaction; without it one is opened for
    this file.

    The file is opened once (open_regular: a regular file, never through a link)
    and that descriptor is hashed and loaded. An entry that is not a regular file —
    listed as such, or found so when opened — is refused without being read.
    The descriptor's size and times go to the ledger with the hash when they are
    settled (FileSignature.settled), so an unchanged file is later skipped unread.
    """
    if staging is None and landing.problem is None:
        with open_staging(conn) as own:
            return load_file(conn, landing, own)
    started = datetime.now(UTC)
    clock = time.perf_counter()
    result = FileResult(landing.name, landing.entity.name if landing.entity else None, "loaded")
    unread = landing.unread
    if unread is None:
        try:
            raw = open_regular(landing.path)
        except NotRegularFile as exc:  # replaced by a link, pipe... since it was listed
            unread = describe_unread(landing.path, exc.mode)
    if unread is not None:
        return _refuse_unread(conn, landing, unread, result, started)
    with raw:
        looked_ns = time.time_ns()  # before fstat: a change after it moves the ctime on
        signature = FileSignature.of(os.fstat(raw.fileno()))
        content_hash = sha256_of(raw)
        trusted = signature if signature.settled(looked_ns) else None
        return _load_opened(
            conn,
            landing,
            staging,
            raw,
            content_hash,
            signature.size,
            started,
            clock,
            result,
            trusted,
        )


def _refuse_unread(
    conn: psycopg.Connection,
    landing: LandingFile,
    unread: Unread,
    result: FileResult,
    started: datetime,
) -> FileResult:
    """Record an entry that is not a regular file as refused; nothing of it is read."""
    previous = _already_loaded(conn, landing.name, unread.ledger_hash)
    if previous:
        return result.skip(*previous[:2])
    result.status, result.message = "refused", f"{landing.name}: {unread.problem}"
    result.batch_id = _record_refusal(conn, landing, unread.ledger_hash, started, result.message, 0)
    return result


def ledger_hash(landing: LandingFile) -> str:
    """What the ledger keys `landing` by with its name: the SHA-256 of a regular
    file's content, or the `Unread` stand-in (nothing read) for any other entry."""
    if landing.unread is not None:
        return landing.unread.ledger_hash
    try:
        with open_regular(landing.path) as raw:
            return sha256_of(raw)
    except NotRegularFile as exc:
        return describe_unread(landing.path, exc.mode).ledger_hash


def _load_opened(
    conn: psycopg.Connection,
    landing: LandingFile,
    staging: psycopg.Connection | None,
    raw: BinaryIO,
    content_hash: str,
    size: int,
    started: datetime,
    clock: float,
    result: FileResult,
    signature: FileSignature | None = None,
) -> FileResult:
    """load_file for a regular file opened as `raw`, whose content hashes to `content_hash`.

    `signature`: the descriptor's size and times if settled, recorded with the batch."""
    previous = _already_loaded(conn, landing.name, content_hash)
    if previous:
        if signature is not None and tuple(previous[2:]) != signature[1:]:
            result.unrecorded_signature = signature
        return result.skip(*previous[:2])

    if landing.problem is not None:
        result.status, result.message = "refused", f"{landing.name}: {landing.problem}"
        result.batch_id = _record_refusal(
            conn, landing, content_hash, started, result.message, size, signature
        )
        return result

    entity = landing.entity
    assert entity is not None and staging is not None
    try:
        with conn.transaction():
            conn.execute("set local timezone = 'UTC'")
            take_ingest_lock(conn)
            previous = _already_loaded(conn, landing.name, content_hash)
            if previous:  # another loader committed it while we waited for the lock
                return result.skip(*previous[:2])
            (batch_id,) = conn.execute(
                """
                insert into raw.ingest_batches
                    (file_name, file_path, entity, file_format, content_hash, file_size,
                     file_mtime_ns, file_ctime_ns, started_at, outcome)
                values (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'loaded')
                returning batch_id
                """,
                [
                    landing.name,
                    landing.path_text,
                    entity.name,
                    landing.file_format,
                    content_hash,
                    size,
                    *_times(signature),
                    started,
                ],
            ).fetchone()
            # The landing table lives in `staging`'s transaction (dropped at its end).
            with staging.transaction():
                rows_read, ignored, source, hashing, parser = _land(staging, entity, landing, raw)
                if hashing.digest.hexdigest() != content_hash:
                    raise FileChangedDuringLoad(
                        f"{landing.name} changed while it was being loaded;"
                        " it will load on the next run"
                    )
                loaded, quarantined = _route(
                    staging, conn, entity, source, batch_id, rows_read, landing.name
                )
            if loaded + quarantined != rows_read:
                raise RuntimeError(
                    f"{landing.name}: read {rows_read} rows but routed {loaded} + {quarantined}"
                )
            conn.execute(
                """
                update raw.ingest_batches
                set rows_read = %s, rows_loaded = %s, rows_quarantined = %s,
                    ignored_columns = %s, finished_at = clock_timestamp()
                where batch_id = %s
                """,
                [rows_read, loaded, quarantined, ignored, batch_id],
            )
    except FileRefused as refused:
        result.status, result.message = "refused", str(refused)
        result.batch_id = _record_refusal(
            conn, landing, content_hash, started, str(refused), size, signature
        )
        result.seconds = time.perf_counter() - clock
        return result

    result.batch_id = batch_id
    result.rows_read, result.rows_loaded, result.rows_quarantined = rows_read, loaded, quarantined
    result.ignored_columns = ignored
    result.parser = parser
    result.seconds = time.perf_counter() - clock
    return result
