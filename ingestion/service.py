"""Load a whole landing directory: every file once, refusals recorded, nothing lost."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ingestion.discovery import discover
from ingestion.loader import FileChangedDuringLoad, FileResult, load_file, open_staging
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
        width = max((len(f.file_name) for f in self.files), default=10)
        for f in self.files:
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
            elif f.status == "skipped":
                out.append(f"  {f.file_name:<{width}}  skipped: {f.message}")
            else:
                out.append(f"  {f.file_name:<{width}}  REFUSED: {f.message}")
        for error in self.errors:
            out.append(f"  ERROR: {error}")
        read = self.total("rows_read")
        rate = read / self.seconds if self.seconds else 0.0
        out.append(
            f"{len(self.files)} files: {self.count('loaded')} loaded, {self.count('skipped')}"
            f" already loaded, {self.count('refused')} refused, {len(self.errors)} failed;"
            f" rows read {read:,}, loaded {self.total('rows_loaded'):,},"
            f" quarantined {self.total('rows_quarantined'):,}"
            f" in {self.seconds:.1f} s ({rate:,.0f} rows/s)"
        )
        return out


def ingest_directory(
    url: str, directory: Path, on_file: Callable[[FileResult], None] | None = None
) -> IngestReport:
    """Load every file of `directory` once. A failure on one file does not stop the rest."""
    clock = time.perf_counter()
    migrate(url)
    report = IngestReport(directory)
    with connect(url, autocommit=True) as conn, open_staging(conn) as staging:
        # Links, folders, pipes, sockets and devices too: each is recorded as refused.
        for landing in discover(directory, special_entries=True):
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
    report.seconds = time.perf_counter() - clock
    return report
