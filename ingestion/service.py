"""Load a whole landing directory: every file once, refusals recorded, nothing lost.

Files already in the ledger are skipped by their listed size and times where those
were recorded (unchanged since they were loaded: nothing is opened), else by
content hash; so a run reads only new and changed files, however many are
already in the folder, and reports the skipped ones in one line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ingestion.discovery import LandingFile, discover
from ingestion.loader import (
    FileChangedDuringLoad,
    FileResult,
    load_file,
    open_staging,
    record_signatures,
)
from platform_core.database import connect
from platform_core.migrations import migrate


@dataclass
class IngestReport:
    directory: Path
    files: list[FileResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # files that could not be processed
    seconds: float = 0.0

    def total(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.files)

    def count(self, status: str) -> int:
        return sum(1 for f in self.files if f.status == status)

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        out = []
        shown = [f for f in self.files if f.status != "skipped"]  # skipped: one line below
        width = max((len(f.file_name) for f in shown), default=10)
        for f in shown:
            if f.status == "loaded":
                extra = (
                    f"  (ignored columns: {', '.join(f.ignored_columns)})"
                    if f.ignored_columns
                    else ""
                )
                out.append(
                    f"  {f.file_name:<{width}}  batch {f.batch_id:>5}  read {f.rows_read:>9,}"
                    f"  loaded {f.rows_loaded:>9,}  quarantined {f.rows_quarantined:>7,}{extra}"
                )
            else:
                out.append(f"  {f.file_name:<{width}}  REFUSED: {f.message}")
        for outcome in ("loaded", "refused"):
            n = sum(1 for f in self.files if f.status == "skipped" and f.earlier_outcome == outcome)
            if n:
                out.append(f"  {n:,} file{'s' if n != 1 else ''} already {outcome}, skipped")
        for error in self.errors:
            out.append(f"  ERROR: {error}")
        read = self.total("rows_read")
        rate = read / self.seconds if self.seconds else 0.0
        out.append(
            f"{len(self.files):,} files: {self.count('loaded'):,} loaded, {self.count('skipped'):,}"
            f" already in the ledger, {self.count('refused'):,} refused, {len(self.errors)} failed;"
            f" rows read {read:,}, loaded {self.total('rows_loaded'):,},"
            f" quarantined {self.total('rows_quarantined'):,}"
            f" in {self.seconds:.1f} s ({rate:,.0f} rows/s)"
        )
        return out


def unchanged_since_loaded(
    conn: psycopg.Connection, landings: list[LandingFile]
) -> dict[str, tuple[int, str]]:
    """name → (batch_id, outcome) of the regular files whose listed size, mtime and
    ctime equal those the ledger recorded when it loaded them: the same, unchanged
    files (any change moves the ctime on), skipped without being opened."""
    listed = {f.name: f.signature for f in landings if f.unread is None and f.signature}
    if not listed:
        return {}
    rows = conn.execute(
        "select file_name, file_size, file_mtime_ns, file_ctime_ns, batch_id, outcome"
        " from raw.ingest_batches where file_name = any(%s) and file_ctime_ns is not null",
        [list(listed)],
    ).fetchall()
    return {
        name: (batch_id, outcome)
        for name, *signature, batch_id, outcome in rows
        if listed[name] == tuple(signature)
    }


def ingest_directory(
    url: str, directory: Path, on_file: Callable[[FileResult], None] | None = None
) -> IngestReport:
    """Load every file of `directory` once. A failure on one file does not stop the rest."""
    clock = time.perf_counter()
    migrate(url)
    report = IngestReport(directory)
    with connect(url, autocommit=True) as conn, open_staging(conn) as staging:
        # Links, folders, pipes, sockets and devices too: each is recorded as refused.
        landings = discover(directory, special_entries=True)
        unchanged = unchanged_since_loaded(conn, landings)
        for landing in landings:
            if landing.name in unchanged:
                entity = landing.entity.name if landing.entity else None
                result = FileResult(landing.name, entity, "skipped")
                report.files.append(result.skip(*unchanged[landing.name]))
                if on_file is not None:
                    on_file(result)
                continue
            try:
                result = load_file(conn, landing, staging)
            except (FileChangedDuringLoad, OSError) as exc:
                report.errors.append(f"{landing.name}: {exc}")
                continue
            except psycopg.OperationalError:
                raise  # the database is gone: nothing else can load either
            except Exception as exc:  # noqa: BLE001 - one bad file must not block the rest
                report.errors.append(f"{landing.name}: could not be processed: {exc!r}")
                continue
            report.files.append(result)
            if on_file is not None:
                on_file(result)
        record_signatures(conn, report.files)
    report.seconds = time.perf_counter() - clock
    return report
